locals {
  # The code's declarations, read where they live: Terraform never holds a copy.
  schemas_dir = "${path.module}/../../dexwatch/core/schemas"
  views_dir   = "${path.module}/../../dexwatch/core/warehouse/views"
  pubsub      = yamldecode(file("${local.schemas_dir}/pubsub.yaml"))
  tables      = jsondecode(file("${path.module}/generated/tables.json")).tables

  labels = merge(var.labels, { app = "dexwatch" })

  artifact_registry = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.dexwatch.repository_id}"
  pipeline_image    = "${local.artifact_registry}/pipeline"
  app_image         = "${local.artifact_registry}/app"

  chains = { for c in var.chains : c.name => c }

  # Where the publishers keep their checkpoints: a GCS volume (storage.tf, run.tf).
  state_mount = "/mnt/state"

  # Cloud Run's deterministic URL of the Slack service, known before the service exists:
  # the consumer needs it as the audience of the push tokens it checks, and the push
  # subscriptions as their endpoint.
  slack_service_name = "dexwatch-slack"
  slack_url          = "https://${local.slack_service_name}-${data.google_project.this.number}.${var.region}.run.app"

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project
}
