# Who may do what. Roles are granted on the resource they are needed on (topic,
# subscription, secret, bucket, dataset, table, Cloud Run resource, service account); a role
# is project-wide only where the permission has no narrower resource. Every role here has a
# line in README.md's table (a test checks it). Secret readers are in secrets.tf.

locals {
  sa = { for key, account in google_service_account.component : key => account.member }

  # No resource below the project to grant these on.
  project_roles = {
    "dataflow-worker"  = { member = local.sa.dataflow, role = "roles/dataflow.worker" }
    "dataflow-bq-jobs" = { member = local.sa.dataflow, role = "roles/bigquery.jobUser" }
    "dataflow-vertex"  = { member = local.sa.dataflow, role = "roles/aiplatform.user" }
    "slack-bq-jobs"    = { member = local.sa.slack, role = "roles/bigquery.jobUser" }
    "deployer-vertex"  = { member = local.sa.deployer, role = "roles/aiplatform.user" }
  }

  topic_publishers = merge({
    "chain-pool-events"     = { topic = "pool-events", member = local.sa.chain }
    "chain-pool-events-dlq" = { topic = "pool-events-dlq", member = local.sa.chain }
    "subgraph-pool-hourly"  = { topic = "pool-hourly", member = local.sa.subgraph }
    "dataflow-alerts"       = { topic = "alerts", member = local.sa.dataflow }
    "slack-alerts-dlq"      = { topic = "alerts-dlq", member = local.sa.slack }
    }, {
    for topic in local.own_topics : "chain-${topic}" => { topic = topic, member = local.sa.chain }
  })

  # The runtime identities CI deploys with (flex-template run, model deploy, Cloud Run).
  deployer_acts_as = ["dataflow", "vertex", "chain", "subgraph", "slack"]
}

resource "google_project_iam_member" "component" {
  for_each = local.project_roles
  project  = var.project
  role     = each.value.role
  member   = each.value.member
}

# CI launches and updates the Dataflow job (`dexwatch deploy`).
resource "google_project_iam_member" "deployer_dataflow" {
  #checkov:skip=CKV_GCP_49:Dataflow jobs have no IAM of their own, so dataflow.developer is project-wide; running a job as the worker account still needs serviceAccountUser, granted on that one account.
  project = var.project
  role    = "roles/dataflow.developer"
  member  = local.sa.deployer
}

# --- Pub/Sub -----------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_publishers
  topic    = google_pubsub_topic.topic[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = each.value.member
}

resource "google_pubsub_subscription_iam_member" "dataflow_subscriber" {
  for_each     = toset(local.dataflow_subscriptions)
  subscription = google_pubsub_subscription.pull[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.sa.dataflow
}

# Beam reads the subscription's settings before it pulls.
resource "google_pubsub_subscription_iam_member" "dataflow_viewer" {
  for_each     = toset(local.dataflow_subscriptions)
  subscription = google_pubsub_subscription.pull[each.key].name
  role         = "roles/pubsub.viewer"
  member       = local.sa.dataflow
}

# Pub/Sub's own service agent moves undeliverable pushes to alerts-dlq: it publishes there
# and acks on the source subscriptions.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.topic["alerts-dlq"].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = google_pubsub_subscription.slack_push
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The service agent signs the push identity's OIDC tokens (needed in projects made before
# April 2021, harmless after).
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.component["push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- BigQuery ----------------------------------------------------------------------------

resource "google_bigquery_dataset_iam_member" "dataflow_editor" {
  dataset_id = google_bigquery_dataset.dexwatch.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = local.sa.dataflow
}

# The Slack consumer writes button clicks, and reads pool names for its messages.
resource "google_bigquery_table_iam_member" "slack_feedback_editor" {
  dataset_id = google_bigquery_dataset.dexwatch.dataset_id
  table_id   = google_bigquery_table.table["alert_feedback"].table_id
  role       = "roles/bigquery.dataEditor"
  member     = local.sa.slack
}

resource "google_bigquery_table_iam_member" "slack_pools_viewer" {
  dataset_id = google_bigquery_dataset.dexwatch.dataset_id
  table_id   = google_bigquery_table.table["pools"].table_id
  role       = "roles/bigquery.dataViewer"
  member     = local.sa.slack
}

# --- Cloud Storage and Artifact Registry -------------------------------------------------

resource "google_storage_bucket_iam_member" "dataflow_staging" {
  bucket = google_storage_bucket.dataflow.name
  role   = "roles/storage.objectAdmin"
  member = local.sa.dataflow
}

resource "google_storage_bucket_iam_member" "deployer_templates" {
  bucket = google_storage_bucket.dataflow.name
  role   = "roles/storage.objectAdmin"
  member = local.sa.deployer
}

resource "google_storage_bucket_iam_member" "models_reader" {
  for_each = toset(["dataflow", "vertex"])
  bucket   = google_storage_bucket.models.name
  role     = "roles/storage.objectViewer"
  member   = local.sa[each.key]
}

resource "google_storage_bucket_iam_member" "deployer_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectUser"
  member = local.sa.deployer
}

resource "google_storage_bucket_iam_member" "publisher_state" {
  for_each = toset(["chain", "subgraph"])
  bucket   = google_storage_bucket.state.name
  role     = "roles/storage.objectUser"
  member   = local.sa[each.key]
}

resource "google_artifact_registry_repository_iam_member" "dataflow_reader" {
  repository = google_artifact_registry_repository.dexwatch.name
  location   = google_artifact_registry_repository.dexwatch.location
  role       = "roles/artifactregistry.reader"
  member     = local.sa.dataflow
}

resource "google_artifact_registry_repository_iam_member" "deployer_writer" {
  repository = google_artifact_registry_repository.dexwatch.name
  location   = google_artifact_registry_repository.dexwatch.location
  role       = "roles/artifactregistry.writer"
  member     = local.sa.deployer
}

# --- Cloud Run ---------------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  name     = google_cloud_run_v2_service.slack.name
  location = google_cloud_run_v2_service.slack.location
  role     = "roles/run.invoker"
  member   = local.sa.push
}

# Slack's button clicks carry Slack's signature, not a Google token (variables.tf).
resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  count    = var.slack_allow_unauthenticated ? 1 : 0
  name     = google_cloud_run_v2_service.slack.name
  location = google_cloud_run_v2_service.slack.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_invoker" {
  for_each = google_cloud_run_v2_job.subgraph
  name     = each.value.name
  location = each.value.location
  role     = "roles/run.invoker"
  member   = local.sa.scheduler
}

resource "google_cloud_run_v2_service_iam_member" "deployer_slack" {
  name     = google_cloud_run_v2_service.slack.name
  location = google_cloud_run_v2_service.slack.location
  role     = "roles/run.developer"
  member   = local.sa.deployer
}

resource "google_cloud_run_v2_job_iam_member" "deployer_subgraph" {
  for_each = google_cloud_run_v2_job.subgraph
  name     = each.value.name
  location = each.value.location
  role     = "roles/run.developer"
  member   = local.sa.deployer
}

resource "google_cloud_run_v2_worker_pool_iam_member" "deployer_chain" {
  for_each = google_cloud_run_v2_worker_pool.chain
  name     = each.value.name
  location = each.value.location
  role     = "roles/run.developer"
  member   = local.sa.deployer
}

resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each           = toset(local.deployer_acts_as)
  service_account_id = google_service_account.component[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = local.sa.deployer
}
