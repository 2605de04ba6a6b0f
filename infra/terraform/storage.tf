# Buckets: uniform bucket-level access (IAM only, no ACLs), public access prevented.

# Dataflow: staging/ (the job's packages, read by every worker that starts), temp/ (scratch,
# deleted after a week) and templates/ (the Flex Template spec `dexwatch deploy` builds).
resource "google_storage_bucket" "dataflow" {
  name                        = "${var.project}-dexwatch-dataflow"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["temp/"]
    }
    action {
      type = "Delete"
    }
  }

  # Old template specs and staged packages: the running job's are current versions.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

# Model artifacts `dexwatch model promote` uploads (<model>/<version>/) for Vertex AI.
resource "google_storage_bucket" "models" {
  name                        = "${var.project}-dexwatch-models"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  # A version overwritten by mistake can be restored: the registry points at these paths.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 90
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

# The publishers' checkpoints, mounted into their Cloud Run containers at local.state_mount
# (Cloud Storage FUSE). A checkpoint is rewritten after every published batch: old versions
# are kept a day, to go back after a bad write.
resource "google_storage_bucket" "state" {
  name                        = "${var.project}-dexwatch-state"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}
