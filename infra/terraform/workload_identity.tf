# GitHub Actions deploy as the deployer service account through workload identity
# federation: a workflow of var.github_repository on var.github_deploy_ref exchanges its
# OIDC token for the account's short-lived credentials. No key exists.
resource "google_iam_workload_identity_pool" "github" {
  workload_identity_pool_id = "dexwatch-github"
  display_name              = "dexwatch GitHub Actions"
  description               = "GitHub Actions of ${var.github_repository}"

  depends_on = [google_project_service.api]
}

resource "google_iam_workload_identity_pool_provider" "github" {
  #checkov:skip=CKV_GCP_125:The condition pins the whole subject claim, repo:<owner/name>:ref:<ref>; checkov cannot resolve var.github_repository (no default) to see it.
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github"
  display_name                       = "GitHub OIDC"

  attribute_mapping = {
    "google.subject"       = "assertion.sub"
    "attribute.repository" = "assertion.repository"
    "attribute.ref"        = "assertion.ref"
  }
  # Only the repository's workflows on the deploy ref: GitHub's subject claim is
  # repo:<owner/name>:ref:<ref> for a job without an environment. Others are refused.
  attribute_condition = "assertion.sub == \"repo:${var.github_repository}:ref:${var.github_deploy_ref}\""

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

resource "google_service_account_iam_member" "github_deployer" {
  service_account_id = google_service_account.component["deployer"].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.github.name}/attribute.repository/${var.github_repository}"
}
