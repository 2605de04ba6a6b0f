# `dexwatch deploy` reads these with `terraform output -json`: keep the names.

output "project" {
  value = var.project
}

output "region" {
  value = var.region
}

output "artifact_registry" {
  description = "The Docker repository, e.g. europe-west1-docker.pkg.dev/PROJECT/dexwatch."
  value       = local.artifact_registry
}

output "pipeline_image" {
  description = "The Flex Template and Dataflow worker image, without tag."
  value       = local.pipeline_image
}

output "app_image" {
  description = "The app image (prediction server, publishers, Slack consumer), without tag."
  value       = local.app_image
}

output "staging_bucket" {
  value = google_storage_bucket.dataflow.name
}

output "models_bucket" {
  value = google_storage_bucket.models.name
}

output "template_gcs_path" {
  value = "gs://${google_storage_bucket.dataflow.name}/templates/dexwatch.json"
}

output "dataflow_job_name" {
  value = var.dataflow_job_name
}

output "dataflow_parameters" {
  description = "The Flex Template's parameters."
  value       = local.dataflow_parameters
}

output "dataflow_environment" {
  description = "The job's runtime environment."
  value       = local.dataflow_environment
}

output "vertex_endpoints" {
  description = "Endpoint id by model name."
  value       = { for model, endpoint in google_vertex_ai_endpoint.model : model => endpoint.name }
}

output "vertex_serving" {
  description = "How `dexwatch model promote` deploys a model version."
  value = {
    machine_type = var.vertex_machine_type
    min_replicas = var.vertex_min_replicas
    max_replicas = var.vertex_max_replicas
    staging_uri  = "gs://${google_storage_bucket.models.name}"
  }
}

output "bigquery_dataset" {
  value = google_bigquery_dataset.dexwatch.dataset_id
}

output "slack_service_url" {
  value = google_cloud_run_v2_service.slack.uri
}

output "serving_service_account" {
  value = google_service_account.component["vertex"].email
}

output "deployer_service_account" {
  value = google_service_account.component["deployer"].email
}

output "workload_identity_provider" {
  description = "For google-github-actions/auth: workload_identity_provider."
  value       = google_iam_workload_identity_pool_provider.github.name
}
