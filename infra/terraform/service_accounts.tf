# One service account per component; their roles are in iam.tf (and README.md's table).
locals {
  components = {
    chain     = "Chain publisher (Cloud Run worker pools)"
    subgraph  = "Subgraph publisher (Cloud Run job)"
    dataflow  = "Streaming pipeline (Dataflow workers and template launcher)"
    slack     = "Slack consumer (Cloud Run service)"
    push      = "Identity of the Pub/Sub pushes to the Slack consumer"
    scheduler = "Cloud Scheduler: runs the subgraph publisher job"
    vertex    = "Vertex AI serving of the deployed models"
    deployer  = "CI deployments from GitHub Actions (workload identity federation)"
  }
}

resource "google_service_account" "component" {
  for_each     = local.components
  account_id   = "dexwatch-${each.key}"
  display_name = "dexwatch ${each.key}"
  description  = each.value

  depends_on = [google_project_service.api]
}
