# The Cloud Run components, all from the app image (the root Dockerfile) with other
# arguments. Settings come from DEXWATCH_* variables (module.settings); secrets the code
# reads from Secret Manager itself are passed by version name, the RPC URLs (which have no
# such setting) as a variable filled from their secret.
#
# First apply: the Slack service and the chain worker pools start only once their secrets
# have a value (main README, "Deploy to GCP": the secrets first, their values, then the rest).

locals {
  app_image_ref = "${local.app_image}:${var.app_image_tag}"
  # The app image runs as uid/gid 10001 (Dockerfile): the checkpoint volume is mounted as them.
  state_mount_options = ["uid=10001", "gid=10001"]
}

# --- Chain publisher ---------------------------------------------------------------------
#
# `dexwatch publish chain` follows the chain without end and serves no HTTP, so it is a
# worker pool (always-on instances, no request path, no port to probe) rather than a
# service, one per chain with exactly one instance: two would publish the same blocks and
# write the same checkpoint.
#
# The checkpoint (last published block, recent block hashes and events, known pools) is a
# file the publisher replaces after every acknowledged batch. A container's own disk dies
# with it, so the file lives on the state bucket through a Cloud Storage FUSE volume: a new
# instance resumes at the first block whose messages may be missing, and what it publishes
# twice keeps its event_id (the pipeline drops duplicates). Caveats, checkable only on GCP:
# a rename on FUSE is a copy then a delete (atomic enough here: the copy lands first), and
# while a new revision rolls out the old and the new instance can overlap for a moment and
# publish the same blocks twice.
resource "google_cloud_run_v2_worker_pool" "chain" {
  for_each            = local.chains
  name                = "dexwatch-chain-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  scaling {
    scaling_mode          = "MANUAL"
    manual_instance_count = 1
  }

  template {
    service_account = google_service_account.component["chain"].email

    containers {
      image   = local.app_image_ref
      command = ["dexwatch"]
      args    = ["publish", "chain"]

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
      }

      dynamic "env" {
        for_each = module.settings.chain_env[each.key]
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = module.settings.rpc_urls_variable
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.secret["rpc-url-${each.key}"].secret_id
            version = "latest"
          }
        }
      }

      volume_mounts {
        name       = "state"
        mount_path = local.state_mount
      }
    }

    volumes {
      name = "state"
      gcs {
        bucket        = google_storage_bucket.state.name
        read_only     = false
        mount_options = local.state_mount_options
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.reader,
    google_secret_manager_secret_iam_member.chain_pool_list,
    google_storage_bucket_iam_member.publisher_state,
  ]
}

# --- Subgraph publisher ------------------------------------------------------------------
#
# `dexwatch publish subgraph --once` publishes every complete hour the subgraphs have
# indexed and exits; Cloud Scheduler starts it every hour (scheduler.tf). One job per chain
# with subgraph_sources. Its checkpoint is on the state bucket too, or every run would
# start over first_run_hours back.
resource "google_cloud_run_v2_job" "subgraph" {
  for_each            = module.settings.subgraph_env
  name                = "dexwatch-publish-subgraph-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.component["subgraph"].email
      max_retries     = 1
      # Well under the hour between runs: two runs never write the checkpoint at once.
      timeout = "1800s"

      containers {
        image   = local.app_image_ref
        command = ["dexwatch"]
        args    = ["publish", "subgraph", "--once"]

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = each.value
          content {
            name  = env.key
            value = env.value
          }
        }

        volume_mounts {
          name       = "state"
          mount_path = local.state_mount
        }
      }

      volumes {
        name = "state"
        gcs {
          bucket        = google_storage_bucket.state.name
          read_only     = false
          mount_options = local.state_mount_options
        }
      }
    }
  }

  depends_on = [google_storage_bucket_iam_member.publisher_state]
}

# --- Slack consumer ----------------------------------------------------------------------
#
# `dexwatch slack serve --push`: alerts arrive on /pubsub/push (one push subscription per
# route, pubsub.tf), button clicks on /slack/actions. One instance at most: the ledger of
# what was posted is a local file, and a second instance would not see the first's posts.
# CPU stays allocated between requests: clicks are written to BigQuery, and posts paced per
# channel, by background threads.
resource "google_cloud_run_v2_service" "slack" {
  name                = local.slack_service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account = google_service_account.component["slack"].email
    # A push waits for its post (local.push_ack_deadline_s).
    timeout                          = "${local.push_ack_deadline_s}s"
    max_instance_request_concurrency = 80

    scaling {
      min_instance_count = var.slack_min_instances
      max_instance_count = 1
    }

    containers {
      image   = local.app_image_ref
      command = ["dexwatch"]
      args    = ["slack", "serve", "--push"]

      ports {
        container_port = 8080
      }

      resources {
        cpu_idle = false
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      dynamic "env" {
        for_each = module.settings.slack_env
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        period_seconds    = 5
        failure_threshold = 12
        http_get {
          path = "/healthz"
        }
      }

      liveness_probe {
        period_seconds = 30
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.reader]
}
