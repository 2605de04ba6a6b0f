terraform {
  # optional() attributes with defaults (1.3) and check blocks (1.5).
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # google_cloud_run_v2_worker_pool (the chain publisher) first shipped in 6.38.
      version = ">= 6.38.0, < 8.0.0"
    }
  }

  # State in a GCS bucket made once by hand (README, "Bootstrap"):
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=dexwatch"
  backend "gcs" {}
}

provider "google" {
  project        = var.project
  region         = var.region
  default_labels = local.labels
}
