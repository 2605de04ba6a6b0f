variable "project" {
  type = string
}

variable "dataset" {
  type = string
}

variable "state_mount" {
  description = "Where the publishers' checkpoint volume is mounted."
  type        = string
}

variable "pubsub" {
  description = "The Pub/Sub declaration: dexwatch/core/schemas/pubsub.yaml, decoded."
  type        = any
}

variable "chains" {
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
    # chain.own_topic: the chain's events go to pool-events-<name>.
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
}

variable "secret_versions" {
  description = "Secret Manager versions (projects/P/secrets/S/versions/V) the code reads itself."
  type = object({
    the_graph_api_key    = string
    slack_bot_token      = string
    slack_signing_secret = string
  })
}

variable "slack_routes" {
  type = list(object({
    name       = string
    channel    = string
    severities = optional(list(string), [])
    chain_ids  = optional(list(number), [])
    kinds      = optional(list(string), [])
  }))
}

variable "base_filter" {
  description = "alerts-slack's own filter (pubsub.yaml), joined to every route's."
  type        = string
}

variable "push_audience" {
  description = "The Slack service's URL: the audience of the push subscriptions' OIDC tokens."
  type        = string
}

variable "push_service_account" {
  description = "The push subscriptions' identity, whose tokens the consumer accepts."
  type        = string
}

variable "dashboard_url" {
  type = string
}
