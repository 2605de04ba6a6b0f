# The settings of each Cloud Run component, as the DEXWATCH_* environment variables it
# reads (dexwatch.core.config: a section as one JSON object, DEXWATCH_<SECTION>, or one key,
# DEXWATCH_<SECTION>__<KEY>), and the Pub/Sub filter of each Slack route.
#
# Plain values only, no provider: tests/unit/test_terraform.py evaluates this module with
# Terraform itself (offline) and loads each component's environment with the real settings
# models, so a key the code does not know fails there and not at deploy time.

locals {
  common = {
    # Production's Pub/Sub: no emulator.
    DEXWATCH_PUBSUB  = jsonencode({ project = var.project, emulator_host = null })
    DEXWATCH_LOGGING = jsonencode({ format = "json" })
  }

  # By chain name: The Graph's gateway, not the local stand-in, with the chain's subgraphs.
  gateway = {
    for chain in var.chains : chain.name => {
      endpoint_url   = null
      api_key_secret = var.secret_versions.the_graph_api_key
      sources = [
        for source in coalesce(chain.subgraph_sources, []) : merge(
          { for key, value in source : key => value if value != null },
          { pools = [for pool in source.pools : lower(pool)] },
        )
      ]
    }
  }

  # Chains whose pool_filter has a threshold: they read the subgraphs' pool lists.
  pool_list_chains = [
    for chain in var.chains : chain.name
    if chain.pool_filter.min_tvl_usd != null || chain.pool_filter.min_volume_usd_24h != null
  ]

  chain_env = {
    for chain in var.chains : chain.name => merge(
      local.common,
      {
        DEXWATCH_CHAIN = jsonencode({
          chain_id      = chain.chain_id
          name          = chain.name
          block_time_s  = chain.block_time_s
          factories     = chain.factories
          start_block   = chain.start_block
          confirmations = chain.confirmations
          own_topic     = chain.own_topic
          pool_filter   = chain.pool_filter
          # On the GCS volume, so a new instance resumes where the last one stopped.
          checkpoint_path = "${var.state_mount}/chain-${chain.chain_id}.json"
        })
      },
      # The gateway only where a threshold reads the pool lists.
      {
        for name, value in { DEXWATCH_SUBGRAPH = jsonencode(local.gateway[chain.name]) } :
        name => value
        if contains(local.pool_list_chains, chain.name)
      },
    )
  }

  # By chain name, for the chains with subgraphs: one subgraph publisher each.
  subgraph_env = {
    for chain in var.chains : chain.name => merge(local.common, {
      DEXWATCH_CHAIN = jsonencode({ chain_id = chain.chain_id, name = chain.name })
      DEXWATCH_SUBGRAPH = jsonencode(merge(local.gateway[chain.name], {
        checkpoint_path = "${var.state_mount}/subgraph-${chain.chain_id}.json"
      }))
    }) if chain.subgraph_sources != null
  }

  # Chains with a pool-events topic of their own (chain.own_topic): a copy of pool-events and
  # of its subscriptions each, named as dexwatch.core.schemas.topics.declaration names them
  # (pool-events-<chain>, pool-events-<chain>-pipeline, ...).
  own_topics = {
    for chain in var.chains : "pool-events-${chain.name}" => merge(
      var.pubsub.topics["pool-events"],
      {
        description = "${var.pubsub.topics["pool-events"].description} Chain ${chain.name} alone."
        subscriptions = {
          for name, sub in var.pubsub.topics["pool-events"].subscriptions :
          "pool-events-${chain.name}${trimprefix(name, "pool-events")}" => sub
        }
      },
    ) if chain.own_topic
  }

  slack_env = merge(local.common, {
    DEXWATCH_WAREHOUSE = jsonencode({
      backend          = "bigquery"
      bigquery_project = var.project
      bigquery_dataset = var.dataset
    })
    DEXWATCH_SLACK = jsonencode({
      enabled = true
      # Cloud Run sends requests to the container's $PORT on any interface.
      host                  = "0.0.0.0"
      bot_token_secret      = var.secret_versions.slack_bot_token
      signing_secret_secret = var.secret_versions.slack_signing_secret
      routes = [
        for route in var.slack_routes : {
          channel    = route.channel
          severities = route.severities
          chain_ids  = route.chain_ids
          kinds      = route.kinds
        }
      ]
      # Alerts reach the consumer only through a route's subscription: none is left over.
      default_channel      = null
      push_audience        = var.push_audience
      push_service_account = var.push_service_account
      dashboard_url        = var.dashboard_url == "" ? null : var.dashboard_url
    })
  })

  # SlackRoute.pubsub_filter() of dexwatch.core.slack_settings, in Terraform: each condition
  # with values is one clause (several values: OR in parentheses), clauses joined by AND,
  # then the base filter of alerts-slack.
  route_filters = {
    for route in var.slack_routes : route.name => join(" AND ", compact(concat(
      [
        for condition in [
          ["severity", route.severities],
          ["chain_id", [for id in route.chain_ids : tostring(id)]],
          ["kind", route.kinds],
        ] :
        length(condition[1]) > 1
        ? "(${join(" OR ", [for value in condition[1] : "attributes.${condition[0]} = \"${value}\""])})"
        : join("", [for value in condition[1] : "attributes.${condition[0]} = \"${value}\""])
        if length(condition[1]) > 0
      ],
      [var.base_filter],
    )))
  }
}
