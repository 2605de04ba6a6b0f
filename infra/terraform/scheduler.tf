# Runs the subgraph publisher job every hour, shortly after the hour: the Cloud Run Admin
# API's jobs.run, called with the scheduler identity's OAuth token (run.invoker on the job).
resource "google_cloud_scheduler_job" "subgraph" {
  for_each         = google_cloud_run_v2_job.subgraph
  name             = "dexwatch-publish-subgraph-${each.key}"
  description      = "dexwatch publish subgraph --once"
  region           = var.region
  schedule         = var.subgraph_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  retry_config {
    retry_count = 2
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/${each.value.id}:run"

    oauth_token {
      service_account_email = google_service_account.component["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_invoker]
}
