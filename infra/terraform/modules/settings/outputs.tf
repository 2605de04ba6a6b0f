output "chain_env" {
  description = "By chain name: the chain publisher's environment (its RPC URLs come from a secret)."
  value       = local.chain_env
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
