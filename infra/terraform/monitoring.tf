# Alert policies on dead letters, lag and drift, to var.notification_channels (none: the
# incidents still open in Cloud Monitoring). Metric filters and the PromQL query can only be
# checked against real metrics on GCP.

locals {
  dead_letter_inspect = ["pool-events-dlq-inspect", "alerts-dlq-inspect"]
  dataflow_job_filter = "resource.type = \"dataflow_job\" AND resource.labels.job_name = \"${var.dataflow_job_name}\""
}

# The custom metrics `dexwatch metrics export` writes (model/monitoring.py), declared so the
# drift policy can refer to feature_psi before the first point is written.
resource "google_monitoring_metric_descriptor" "feature_psi" {
  type         = "custom.googleapis.com/dexwatch/feature_psi"
  display_name = "dexwatch feature PSI"
  description  = "Population stability index of a model feature: its training data against the recent rows."
  metric_kind  = "GAUGE"
  value_type   = "DOUBLE"
  unit         = "1"

  labels {
    key         = "model"
    value_type  = "STRING"
    description = "chain-window or pool-hour"
  }
  labels {
    key         = "feature"
    value_type  = "STRING"
    description = "The feature"
  }
  labels {
    key         = "version"
    value_type  = "STRING"
    description = "The model version in production"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_metric_descriptor" "anomaly_rate" {
  type         = "custom.googleapis.com/dexwatch/anomaly_rate"
  display_name = "dexwatch anomaly rate"
  description  = "Share of the recent scored rows flagged anomalous."
  metric_kind  = "GAUGE"
  value_type   = "DOUBLE"
  unit         = "1"

  labels {
    key         = "source"
    value_type  = "STRING"
    description = "chain or subgraph"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "dexwatch: dead letters"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Messages were dead-lettered. pool-events-dlq-inspect: chain logs the publisher could not
      decode (attribute `reason`). alerts-dlq-inspect: alerts Slack did not take (attributes
      `reason`, `stage`), or pushes Pub/Sub gave up on. Pull the inspect subscriptions to read
      them; the incident closes once they are acked.
    EOT
  }

  dynamic "conditions" {
    for_each = toset(local.dead_letter_inspect)
    content {
      display_name = "Undelivered messages on ${conditions.value}"
      condition_threshold {
        filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${conditions.value}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"
        aggregations {
          alignment_period   = "300s"
          per_series_aligner = "ALIGN_MAX"
        }
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_pubsub_subscription.pull]
}

# Beam's counter dexwatch/dead_letters (beam_pipelines/transforms/parse.py), exported by
# Dataflow as job/user_counter, grew in the last 10 minutes. A policy of its own: a PromQL
# condition cannot share a policy with other conditions.
resource "google_monitoring_alert_policy" "pipeline_dead_letters" {
  display_name          = "dexwatch: pipeline dead letters"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "The pipeline dead-lettered messages it could not read: see the `dead_letters` table (stage, reason, payload)."
  }

  conditions {
    display_name = "Beam counter dead_letters grew"
    condition_prometheus_query_language {
      query               = "sum(increase(dataflow_googleapis_com:job_user_counter{monitored_resource=\"dataflow_job\", job_name=\"${var.dataflow_job_name}\", metric_name=\"dead_letters\"}[10m])) > 0"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

resource "google_monitoring_alert_policy" "lag" {
  display_name          = "dexwatch: pipeline lag"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "The streaming pipeline is behind: pool events wait unread on pool-events-pipeline (or a chain's own pool-events-<chain>-pipeline), or its event-time watermark stopped. Look at the Dataflow job (workers, errors, backlog)."
  }

  conditions {
    display_name = "Oldest unacked pool event the pipeline has not read"
    condition_threshold {
      # Every chain's: the shared subscription and the own topics' (one series each).
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = one_of(${join(", ", [for s in local.event_subscriptions : "\"${s}\""])}) AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.lag_alert_s
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  conditions {
    display_name = "Dataflow data watermark age"
    condition_threshold {
      filter          = "${local.dataflow_job_filter} AND metric.type = \"dataflow.googleapis.com/job/data_watermark_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.lag_alert_s
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_pubsub_subscription.pull]
}

resource "google_monitoring_alert_policy" "drift" {
  display_name          = "dexwatch: feature drift"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    mime_type = "text/markdown"
    content   = "A model feature drifted from its training data (PSI above the threshold; labels model, feature, version). See `dexwatch drift check`, and consider retraining (`dexwatch train`)."
  }

  conditions {
    display_name = "Feature PSI above ${var.psi_alert_threshold}"
    condition_threshold {
      filter          = "resource.type = \"global\" AND metric.type = \"${google_monitoring_metric_descriptor.feature_psi.type}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.psi_alert_threshold
      duration        = "0s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "604800s"
  }
}
