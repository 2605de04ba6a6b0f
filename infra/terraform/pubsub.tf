# Topics and subscriptions of dexwatch/core/schemas/pubsub.yaml, the declaration the local
# stack gives the emulator: Terraform reads the file itself, so the two cannot differ.

locals {
  # The declaration, with a copy of pool-events and its subscriptions for each chain that
  # has a topic of its own (chain.own_topic; the settings module names them).
  topics     = module.settings.pubsub_topics
  own_topics = module.settings.own_topics


  # Every subscription of the declaration, with its topic and the topic's retention.
  subscriptions = merge([
    for topic, spec in local.topics : {
      for name, sub in try(spec.subscriptions, {}) : name => merge(sub, {
        topic = topic
        # A subscription keeps messages 7 days at most (a topic up to 31).
        retention_s = min(spec.message_retention_s, 604800)
      })
    }
  ]...)

  # Read by the Dataflow job. Dataflow does not support Pub/Sub dead-letter topics or retry
  # policies on its subscriptions (it acks only what it has committed, and dead-letters
  # unreadable messages itself, to the dead_letters table): these get neither.
  event_subscriptions    = concat(["pool-events-pipeline"], [for t in local.own_topics : "${t}-pipeline"])
  dataflow_subscriptions = concat(local.event_subscriptions, ["pool-hourly-pipeline"])

  # In production alerts-slack is one push subscription per Slack route (slack_push below),
  # with its settings and the route's filter.
  push_replaced = ["alerts-slack"]

  pull_subscriptions = {
    for name, sub in local.subscriptions : name => sub if !contains(local.push_replaced, name)
  }

  # A push request is held until its alert is posted (dexwatch.app.slack.server.PUSH_WAIT_S,
  # 540 s) while posts queue for their channel's turn: the push subscriptions wait up to
  # Pub/Sub's maximum before counting a delivery as failed, not alerts-slack's 20 s (a pull
  # client extends its deadline itself).
  push_ack_deadline_s = 600
}

# Pub/Sub schemas are AVRO or PROTOCOL_BUFFER: a topic whose declaration names a schema
# (pool-events: pool_event.avsc) validates every message published to it, JSON-encoded.
#
# The alerts topic has none, on purpose: it carries the alert contract's version 2 and,
# during a migration, version-1 copies (pipeline.alert_v1_until) with other fields. One Avro
# record cannot accept both: the fields one version lacks would have to be optional, and
# Avro's JSON encoding writes an optional value as a {"type": value} union, which the plain
# JSON the pipeline publishes does not. (Two schema revisions accepted side by side could,
# but the contract has no Avro form to keep them in, and a wrong one would make Pub/Sub
# refuse the pipeline's own alerts.) Readers check the contract: schemas.alert.parse_alert.
resource "google_pubsub_schema" "topic" {
  for_each = {
    for name, spec in local.pubsub.topics : name => spec.schema if try(spec.schema, null) != null
  }
  name       = each.key
  type       = "AVRO"
  definition = file("${local.schemas_dir}/${each.value}")

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "topic" {
  for_each                   = local.topics
  name                       = each.key
  message_retention_duration = "${each.value.message_retention_s}s"
  labels                     = local.labels

  dynamic "schema_settings" {
    # A chain's own pool-events topic validates with pool-events' schema.
    for_each = try(each.value.schema, null) != null ? [
      google_pubsub_schema.topic[contains(local.own_topics, each.key) ? "pool-events" : each.key].id
    ] : []
    content {
      schema   = schema_settings.value
      encoding = "JSON"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "pull" {
  for_each                   = local.pull_subscriptions
  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  labels                     = local.labels
  ack_deadline_seconds       = try(each.value.ack_deadline_s, 10)
  enable_message_ordering    = try(each.value.enable_message_ordering, false)
  retain_acked_messages      = try(each.value.retain_acked_messages, false)
  filter                     = try(each.value.filter, "")
  message_retention_duration = "${each.value.retention_s}s"

  # Never deleted for inactivity: a monitor nobody runs for a month must still exist.
  expiration_policy {
    ttl = ""
  }

  # Readers that nack (or die) get the message again later, not in a tight loop. No
  # dead-letter topic here: these readers (the pipeline aside) are consoles that ack what
  # they print, and a dead-letter topic would turn a closed terminal into an incident.
  dynamic "retry_policy" {
    for_each = contains(local.dataflow_subscriptions, each.key) ? [] : [1]
    content {
      minimum_backoff = "10s"
      maximum_backoff = "600s"
    }
  }
}

# The Slack consumer's subscriptions: one push subscription per route, to the Cloud Run
# service, with the push identity's OIDC token (the service checks it) and the route's
# filter joined to alerts-slack's own (NOT attributes:v1_copy). An alert the consumer
# cannot post after slack_max_delivery_attempts pushes goes to alerts-dlq.
resource "google_pubsub_subscription" "slack_push" {
  for_each                   = { for route in var.slack_routes : route.name => route }
  name                       = "alerts-slack-${each.key}"
  topic                      = google_pubsub_topic.topic["alerts"].id
  labels                     = local.labels
  ack_deadline_seconds       = local.push_ack_deadline_s
  filter                     = module.settings.route_filters[each.key]
  message_retention_duration = "${local.subscriptions["alerts-slack"].retention_s}s"

  push_config {
    push_endpoint = "${local.slack_url}/pubsub/push"
    oidc_token {
      service_account_email = google_service_account.component["push"].email
      audience              = local.slack_url
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topic["alerts-dlq"].id
    max_delivery_attempts = var.slack_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_v2_service_iam_member.push_invoker,
  ]
}
