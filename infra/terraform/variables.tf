variable "project" {
  description = "GCP project id."
  type        = string
}

variable "region" {
  description = "Region of every regional resource: Pub/Sub storage, BigQuery, Dataflow, Cloud Run, Vertex AI."
  type        = string
  default     = "europe-west1"
}

variable "labels" {
  description = "Labels added to every resource that takes labels (with app = dexwatch)."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect tables, views and Cloud Run resources from terraform destroy (buckets are never force-destroyed)."
  type        = bool
  default     = true
}

# --- What is watched -------------------------------------------------------------------

variable "chains" {
  description = <<-EOT
    Chains the chain publisher follows, one Cloud Run worker pool each. The RPC URLs are not
    here: each chain has a Secret Manager secret rpc-url-<name> whose value is a JSON list of
    URLs (["https://..."]), added by hand. factories: the factories whose pools are followed;
    pool_filter: which of them (allow, deny, tokens: addresses; empty: every pool; and
    min_tvl_usd, min_volume_usd_24h: only pools the subgraphs list above them, re-read every
    refresh_s).
  EOT
  type = list(object({
    chain_id = number
    name     = string
    factories = list(object({
      dex         = string
      protocol    = string
      address     = string
      start_block = optional(number, 0)
    }))
    start_block = optional(number, 0)
    # chain.block_time_s: the chain's fixed block time (Ethereum 12), if it has one.
    block_time_s  = optional(number)
    confirmations = optional(number, 2)
    # chain.own_topic: publish to a topic of the chain's own (pool-events-<name>, with its
    # own subscriptions; the Dataflow job reads them too) instead of the shared pool-events.
    own_topic = optional(bool, false)
    # chain.assets: the tokens its market view prices together (their addresses on this
    # chain); none: market.assets. For the Dataflow job.
    assets = optional(list(object({
      address  = string
      symbol   = string
      decimals = optional(number, 18)
      peg      = optional(string)
    })))
    # chain.pool_filter: which of the factories' pools are followed (all by default). With
    # min_tvl_usd or min_volume_usd_24h, only pools the chain's subgraph_sources list above
    # them (the worker then reads the-graph-api-key).
    pool_filter = optional(object({
      allow              = optional(list(string), [])
      deny               = optional(list(string), [])
      tokens             = optional(list(string), [])
      min_tvl_usd        = optional(number)
      min_volume_usd_24h = optional(number)
      refresh_s          = optional(number, 3600)
    }), {})
    # chain.subgraph_sources: The Graph's subgraphs of this chain's dexes (their ids differ
    # per chain). A chain with them gets a subgraph publisher job, run hourly; its pools are
    # each subgraph's allowlist (empty: the subgraph's top pools by TVL). Without them, no
    # hourly path for the chain, and no pool_filter thresholds.
    subgraph_sources = optional(list(object({
      dex           = string
      protocol      = string
      subgraph_id   = optional(string)
      deployment_id = optional(string)
      swap_fee      = optional(number)
      pools         = optional(list(string), [])
    })))
  }))
  default = []

  validation {
    condition     = alltrue([for c in var.chains : can(regex("^[a-z][a-z0-9-]{0,19}$", c.name))])
    error_message = "Each chain name must be lower-case letters, digits and dashes (at most 20)."
  }
  validation {
    condition     = length(distinct([for c in var.chains : c.chain_id])) == length(var.chains)
    error_message = "Each chain_id may appear once."
  }
}

variable "subgraph_schedule" {
  description = "Cron (UTC) of the subgraph publisher's runs: a few minutes after each hour."
  type        = string
  default     = "5 * * * *"
}

# --- Alerts to Slack -------------------------------------------------------------------

variable "slack_routes" {
  description = <<-EOT
    Alert routes (slack.routes, first match wins): one Pub/Sub push subscription each, whose
    filter is the route's conditions (an empty list matches any value). Put a route with no
    conditions last to post every other alert.
  EOT
  type = list(object({
    name       = string
    channel    = string
    severities = optional(list(string), [])
    chain_ids  = optional(list(number), [])
    kinds      = optional(list(string), [])
  }))
  default = [{ name = "all", channel = "#dexwatch-alerts" }]

  validation {
    condition     = length(var.slack_routes) > 0
    error_message = "Give at least one route: without one no alert reaches Slack."
  }
  validation {
    condition     = alltrue([for r in var.slack_routes : can(regex("^[a-z][a-z0-9-]{0,30}$", r.name))])
    error_message = "Each route name must be lower-case letters, digits and dashes."
  }
  validation {
    condition = alltrue(flatten([
      for r in var.slack_routes : [for s in r.severities : contains(["low", "medium", "high"], s)]
    ]))
    error_message = "Severities are low, medium or high."
  }
}

variable "slack_min_instances" {
  description = "Minimum instances of the Slack consumer (0 saves money, 1 avoids cold starts)."
  type        = number
  default     = 1

  validation {
    condition     = contains([0, 1], var.slack_min_instances)
    error_message = "The consumer runs as one instance at most (its post ledger is local): 0 or 1."
  }
}

variable "slack_allow_unauthenticated" {
  description = <<-EOT
    Let anyone reach the Slack service, as Slack's button clicks (/slack/actions) need: Slack
    cannot send a Google identity token. The service checks Slack's signature on clicks and
    the push subscription's OIDC token on /pubsub/push itself. Off: only the push identity
    may call it, and the buttons do not work.
  EOT
  type        = bool
  default     = false
}

variable "slack_dashboard_url" {
  description = "Dashboard linked from Slack messages (slack.dashboard_url); empty: none."
  type        = string
  default     = ""
}

variable "slack_max_delivery_attempts" {
  description = "Pushes of one alert before Pub/Sub moves it to alerts-dlq (5 to 100)."
  type        = number
  default     = 10
}

# --- Images and sizes ------------------------------------------------------------------

variable "app_image_tag" {
  description = "Tag of the app image (Artifact Registry dexwatch/app) the Cloud Run publishers and Slack consumer run."
  type        = string
}

variable "dataflow_job_name" {
  description = "Name of the streaming Dataflow job (`dexwatch deploy` launches and updates it)."
  type        = string
  default     = "dexwatch"
}

variable "dataflow_max_workers" {
  description = "Autoscaling ceiling of the Dataflow job."
  type        = number
  default     = 3
}

variable "dataflow_machine_type" {
  description = "Dataflow worker machine type."
  type        = string
  default     = "n2-standard-2"
}

variable "dataflow_subnetwork" {
  description = "Subnetwork of the Dataflow workers (regions/R/subnetworks/S); empty: the default network."
  type        = string
  default     = ""
}

variable "vertex_endpoint_ids" {
  description = "Numeric ids of the Vertex AI endpoints, by model (unique in the project and region)."
  type        = map(string)
  default = {
    "chain-window" = "4310001"
    "pool-hour"    = "4310002"
  }

  validation {
    condition     = alltrue([for id in values(var.vertex_endpoint_ids) : can(regex("^[1-9][0-9]{0,9}$", id))])
    error_message = "Endpoint ids are numbers of at most 10 digits without a leading zero."
  }
  validation {
    condition     = toset(keys(var.vertex_endpoint_ids)) == toset(["chain-window", "pool-hour"])
    error_message = "Give one id for each model: chain-window and pool-hour."
  }
}

variable "vertex_machine_type" {
  description = "Machine type of the deployed models (model.vertex_machine_type of `dexwatch model promote`)."
  type        = string
  default     = "n1-standard-2"
}

variable "vertex_min_replicas" {
  description = "Minimum replicas of a deployed model."
  type        = number
  default     = 1
}

variable "vertex_max_replicas" {
  description = "Maximum replicas of a deployed model."
  type        = number
  default     = 1
}

# --- Monitoring ------------------------------------------------------------------------

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) of the alert policies; may be empty."
  type        = list(string)
  default     = []
}

variable "lag_alert_s" {
  description = "Alert when the pipeline's oldest unacked pool event, or its data watermark, is this old."
  type        = number
  default     = 600
}

variable "psi_alert_threshold" {
  description = "Alert when a feature's PSI (custom.googleapis.com/dexwatch/feature_psi) is above this (monitoring.psi_threshold)."
  type        = number
  default     = 0.25
}

# --- CI --------------------------------------------------------------------------------

variable "github_repository" {
  description = "GitHub repository (owner/name) whose Actions deploy, through workload identity federation."
  type        = string
}

variable "github_deploy_ref" {
  description = "The git ref allowed to deploy."
  type        = string
  default     = "refs/heads/main"
}
