# dexwatch in production on Google Cloud. One file per service; README.md here has the design
# notes, the main README the steps from an empty project and the table of roles.

# Each Cloud Run component's DEXWATCH_* environment and the Slack routes' Pub/Sub filters:
# plain values in a module without a provider, so the tests evaluate them offline.
module "settings" {
  source = "./modules/settings"

  project     = var.project
  dataset     = google_bigquery_dataset.dexwatch.dataset_id
  state_mount = local.state_mount
  chains      = var.chains
  pubsub      = local.pubsub
  secret_versions = {
    the_graph_api_key    = "${google_secret_manager_secret.secret["the-graph-api-key"].id}/versions/latest"
    slack_bot_token      = "${google_secret_manager_secret.secret["slack-bot-token"].id}/versions/latest"
    slack_signing_secret = "${google_secret_manager_secret.secret["slack-signing-secret"].id}/versions/latest"
  }
  slack_routes         = var.slack_routes
  base_filter          = try(local.subscriptions["alerts-slack"].filter, "")
  push_audience        = local.slack_url
  push_service_account = google_service_account.component["push"].email
  dashboard_url        = var.slack_dashboard_url
}
