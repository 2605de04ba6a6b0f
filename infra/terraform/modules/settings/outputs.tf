output "chain_env" {
  description = "By chain name: the chain publisher's environment (its RPC URLs come from a secret)."
  value       = local.chain_env

  precondition {
    condition = alltrue([
      for chain in var.chains : chain.subgraph_sources != null
      if contains(local.pool_list_chains, chain.name)
    ])
    error_message = "A pool_filter threshold reads the chain's subgraph_sources: give that chain its subgraphs."
  }
}

output "pool_list_chains" {
  description = "The chains whose pool_filter has a threshold: their publishers read The Graph."
  value       = local.pool_list_chains
}

output "rpc_urls_variable" {
  description = "The variable that takes a chain's RPC URLs (a JSON list) from its secret."
  value       = "DEXWATCH_CHAIN__RPC_URLS"
}

output "subgraph_env" {
  description = "By chain name, for the chains with subgraph_sources: the subgraph publisher's environment."
  value       = local.subgraph_env
}

output "pipeline_chains" {
  description = "The chains as the Dataflow job scores them (the template's chains parameter, JSON): ids, names, block times, market assets, own topics; no RPC URLs."
  value = jsonencode([
    for chain in var.chains : {
      chain_id     = chain.chain_id
      name         = chain.name
      block_time_s = chain.block_time_s
      own_topic    = chain.own_topic
      assets       = chain.assets
    }
  ])
}

output "pubsub_topics" {
  description = "The Pub/Sub declaration's topics, with a pool-events topic for each chain that has its own."
  value       = merge(var.pubsub.topics, local.own_topics)
}

output "own_topics" {
  description = "The pool-events topics of the chains that have their own."
  value       = keys(local.own_topics)
}

output "slack_env" {
  description = "The Slack consumer's environment."
  value       = local.slack_env
}

output "route_filters" {
  description = "By route name: the Pub/Sub filter of its push subscription."
  value       = local.route_filters

  precondition {
    condition     = alltrue([for f in values(local.route_filters) : length(f) <= 256])
    error_message = "A Pub/Sub filter is at most 256 bytes: split the route."
  }
}
