# The streaming Dataflow job is not a Terraform resource. `dexwatch deploy` launches it from
# the Flex Template (gcloud dataflow flex-template run, with --update while a job of that
# name runs), because an update must come after the pipeline image is built and the models
# are promoted, and must carry --update to keep the job's state (windows, alert threads);
# a Terraform apply would do neither in that order. Terraform provides everything the job
# needs (service account and its roles, buckets, subscriptions, topic, dataset, endpoints)
# and outputs it: dataflow_parameters (the template's parameters) and dataflow_environment.

locals {
  dataflow_parameters = {
    bigquery_dataset          = google_bigquery_dataset.dexwatch.dataset_id
    vertex_endpoint_id        = google_vertex_ai_endpoint.model["chain-window"].name
    hourly_vertex_endpoint_id = google_vertex_ai_endpoint.model["pool-hour"].name
    vertex_location           = var.region
    chains                    = module.settings.pipeline_chains
  }

  dataflow_environment = {
    service_account_email   = google_service_account.component["dataflow"].email
    temp_location           = "gs://${google_storage_bucket.dataflow.name}/temp"
    staging_location        = "gs://${google_storage_bucket.dataflow.name}/staging"
    subnetwork              = var.dataflow_subnetwork
    max_workers             = var.dataflow_max_workers
    worker_machine_type     = var.dataflow_machine_type
    enable_streaming_engine = true
  }
}
