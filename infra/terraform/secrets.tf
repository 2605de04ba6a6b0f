# Secrets without values: Terraform creates the secrets and who may read them; the values
# are added by hand (README, "Secrets"), so they are never in Terraform state.
#
#   rpc-url-<chain>       a JSON list of the chain's RPC URLs (DEXWATCH_CHAIN__RPC_URLS)
#   the-graph-api-key     The Graph's gateway key (subgraph.api_key_secret); the chain
#                         publisher's too when a chain's pool_filter has a threshold
#   slack-bot-token       the Slack app's bot token (slack.bot_token_secret)
#   slack-signing-secret  verifies Slack's button clicks (slack.signing_secret_secret)

locals {
  secrets = merge(
    { for name, chain in local.chains : "rpc-url-${name}" => "chain" },
    {
      "the-graph-api-key"    = "subgraph"
      "slack-bot-token"      = "slack"
      "slack-signing-secret" = "slack"
    },
  )
}

resource "google_secret_manager_secret" "secret" {
  for_each  = local.secrets
  secret_id = each.key
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

# Each secret is readable by the one component that uses it.
resource "google_secret_manager_secret_iam_member" "reader" {
  for_each  = local.secrets
  secret_id = google_secret_manager_secret.secret[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.component[each.value].member
}

# A chain publisher whose pool_filter has a threshold reads the subgraphs' pool lists with
# the same gateway key.
resource "google_secret_manager_secret_iam_member" "chain_pool_list" {
  count     = length(module.settings.pool_list_chains) > 0 ? 1 : 0
  secret_id = google_secret_manager_secret.secret["the-graph-api-key"].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.component["chain"].member
}
