"""``python -m infra.local.subgraph [--config FILE] [--lag-s S] [--fault NAME:SHARE] ...``:
the local stand-in for The Graph, as `dexwatch run` starts it: one subgraph per configured
source of each local chain (subgraph.sources, or the chain's subgraph_sources), served on
local.host:local.subgraph_port, each indexed from its chain's node, lagging and failing as
local.subgraph_standin says. The flags override those settings, so a run can probe the
subgraph publisher's waiting and retries.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from dexwatch.core import logs
from dexwatch.core.settings import SettingsError
from infra.local.deployment import LocalDeployment
from infra.local.settings import LocalSettings, load_local_settings
from infra.local.subgraph.indexer import ChainIndexer
from infra.local.subgraph.schema import StandInSubgraph
from infra.local.subgraph.server import FAULTS, SubgraphStandIn, describe_behaviour

log = logging.getLogger("dexwatch.local.subgraph")


def _fault_share(text: str) -> tuple[str, float]:
    name, _, share = text.partition(":")
    try:
        return name, float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not NAME:SHARE (e.g. http_429:0.2): {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.subgraph",
        description=__doc__,
        epilog="Unset flags keep local.subgraph_standin's values (no lag, no faults).",
    )
    parser.add_argument("--config", type=Path, default=None, help="dexwatch YAML settings")
    parser.add_argument(
        "--lag-blocks",
        type=int,
        metavar="N",
        help="keep _meta.block and the rows at least N blocks behind the chain's head",
    )
    parser.add_argument(
        "--lag-s",
        type=float,
        metavar="S",
        help="keep them at least S seconds of chain time behind the head",
    )
    parser.add_argument(
        "--fault",
        type=_fault_share,
        action="append",
        metavar="NAME:SHARE",
        help=f"answer this share of requests with a fault, one of {', '.join(FAULTS)}; "
        "repeatable; overrides that fault's share in the settings",
    )
    parser.add_argument("--seed", type=int, metavar="N", help="seed of the random faults")
    parser.add_argument(
        "--hang-s", type=float, metavar="S", help="how long a timeout fault holds a request"
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as local.subgraph_standin settings (validated like the file's)."""
    given = {"lag_blocks": args.lag_blocks, "lag_s": args.lag_s, "seed": args.seed,
             "hang_s": args.hang_s}  # fmt: skip
    standin: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if args.fault:
        standin["faults"] = dict(args.fault)
    return {"local": {"subgraph_standin": standin}} if standin else {}


def load(argv: list[str] | None = None) -> LocalSettings:
    """The stand-in's settings: the config file and environment, then the flags."""
    args = _parser().parse_args(argv)
    overrides = _overrides(args)
    try:
        return load_local_settings(args.config, **overrides)
    except SettingsError as err:
        if not overrides:
            raise
        raise SettingsError(f"{err} (the flags set local.subgraph_standin)") from None


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load(argv)
        chains = settings.subgraph_chains()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logs.configure(settings.logging.level, settings.logging.format)
    logs.install_excepthooks()
    local = settings.local
    behaviour = local.subgraph_standin
    log.info("the stand-in for The Graph: %s", describe_behaviour(behaviour))
    subgraphs: dict[str, StandInSubgraph] = {}
    indexers: dict[str, ChainIndexer] = {}
    for chain in chains:
        sources = chain.subgraph.sources
        own = {source.path: StandInSubgraph(source.protocol) for source in sources}
        subgraphs.update(own)
        indexers[chain.local.rpc_url] = ChainIndexer(
            chain.local.rpc_url,
            LocalDeployment.load(chain.deployment_path),
            {source.dex: own[source.path] for source in sources},
            lag_blocks=behaviour.lag_blocks,
            lag_s=behaviour.lag_s,
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # What the chains already have is indexed before serving: a publisher starting at the
    # same time then finds the history complete instead of an empty subgraph.
    for indexer in indexers.values():
        indexer.index_once()
    standin = SubgraphStandIn(
        subgraphs,
        local.host,
        local.subgraph_port,
        hang_s=behaviour.hang_s,
        faults=behaviour.faults,
        seed=behaviour.seed,
    )
    with standin:
        log.info(
            "serving a local stand-in for The Graph on %s (%s), indexing %s",
            local.subgraph_url,
            ", ".join(f"/{path}" for path in subgraphs),
            ", ".join(indexers),
        )
        threads = [
            threading.Thread(target=indexer.run, args=(stop,), name=f"index {url}", daemon=True)
            for url, indexer in indexers.items()
        ]
        for thread in threads:
            thread.start()
        while not stop.wait(1.0):
            pass
        for thread in threads:
            thread.join()
    for indexer in indexers.values():
        indexer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
