"""A local stand-in for The Graph: the parts of the Uniswap V3 and SushiSwap V2 subgraph
schemas that dexwatch queries, served over HTTP with hour data indexed from the local chain.
It is not The Graph and not graph-node; production reads The Graph's gateway.
"""
