"""``python -m infra.local.subgraph [--config FILE]``: the local stand-in for The Graph, as
`dexwatch run` starts it: one subgraph per configured source (subgraph.sources), served on
local.host:local.subgraph_port, indexed from the local chain (local.rpc_url).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from dexwatch import logs
from dexwatch.contracts.deployment import LocalDeployment
from dexwatch.settings import SettingsError, load_settings
from infra.local.subgraph.indexer import ChainIndexer
from infra.local.subgraph.schema import StandInSubgraph
from infra.local.subgraph.server import SubgraphStandIn

log = logging.getLogger("dexwatch.local.subgraph")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.subgraph", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="dexwatch YAML settings")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logs.configure(settings.logging.level, settings.logging.format)
    deployment = LocalDeployment.load(settings.local.deployment_path)
    sources = settings.subgraph.sources
    subgraphs = {source.path: StandInSubgraph(source.protocol) for source in sources}
    indexer = ChainIndexer(
        settings.local.rpc_url,
        deployment,
        {source.dex: subgraphs[source.path] for source in sources},
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    local = settings.local
    # What the chain already has is indexed before serving: a publisher starting at the
    # same time then finds the history complete instead of an empty subgraph.
    indexer.index_once()
    with SubgraphStandIn(subgraphs, local.host, local.subgraph_port):
        log.info(
            "serving a local stand-in for The Graph on %s (%s), indexing %s",
            local.subgraph_url,
            ", ".join(f"/{source.path}" for source in sources),
            local.rpc_url,
        )
        indexer.run(stop)
    indexer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
