output "chain_env" {
  description = "By chain name: the chain publisher's environment (its RPC URLs come from a secret)."
  value       = local.chain_env

  precondition {
    condition = alltrue([
      for chain in var.chains : chain.chain_id == var.subgraph_chain_id
      if contains(local.pool_list_chains, chain.name)
    ])
    error_message = "A pool_filter threshold reads subgraph_sources, the subgraphs of chain subgraph_chain_id: set it on that chain only."
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
  description = "The subgraph publisher's environment."
  value       = local.subgraph_env
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
