"""The chain publisher's JSON-RPC transport against web3.py's HTTPProvider, side by side.

The publisher's client (``publishers.chain.rpc.RpcClient``: httpx, orjson, batched header
reads) and web3's ``HTTPProvider`` (``make_request`` / ``make_batch_request``, web3's
transport without its result formatters) make the same requests to the same anvil: the
publisher's read pattern, eth_getLogs over consecutive ranges of the followed pools, then
the headers of the blocks with logs in batches of 100. Both are checked to return the
same logs. Rounds alternate between the two; each figure is the median round.

Starts an anvil of its own and mines a busy market first (not timed). Writes
``bench/results/rpc_transport.json``.

    .venv/bin/python bench/rpc_transport.py [--hours H] [--rounds R] [--range-blocks N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _results import write_results  # noqa: I001 - bench/ is on sys.path when run
from web3 import HTTPProvider

from infra.local import processes, stack
from infra.local.deploy import deploy_local_contracts
from infra.local.market import MarketSimulator
from infra.local.settings import load_local_settings
from publishers.chain.events import POOL_EVENT_TOPICS
from publishers.chain.rpc import RpcClient

ROOT = Path(__file__).resolve().parent.parent
HEADER_BATCH = 100


def publisher_read(rpc: RpcClient, ranges, addresses) -> tuple[int, int]:
    logs = []
    for first, last in ranges:
        logs += rpc.get_logs(first, last, addresses, [POOL_EVENT_TOPICS])
    blocks = sorted({int(log["blockNumber"], 16) for log in logs})
    headers = rpc.get_headers(blocks)
    return len(logs), len(headers)


def web3_read(provider: HTTPProvider, ranges, addresses) -> tuple[int, int]:
    logs = []
    for first, last in ranges:
        query = {"fromBlock": hex(first), "toBlock": hex(last), "address": addresses,
                 "topics": [POOL_EVENT_TOPICS]}  # fmt: skip
        logs += provider.make_request("eth_getLogs", [query])["result"]
    blocks = sorted({int(log["blockNumber"], 16) for log in logs})
    headers = []
    for start in range(0, len(blocks), HEADER_BATCH):
        calls = [
            ("eth_getBlockByNumber", [hex(b), False]) for b in blocks[start : start + HEADER_BATCH]
        ]
        headers += [reply["result"] for reply in provider.make_batch_request(calls)]
    return len(logs), len(headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=0.5, help="simulated hours to mine")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--range-blocks", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        settings = load_local_settings(
            state_dir=state,
            local={"anvil_port": processes.free_port(), "node_modules": str(ROOT / "node_modules")},
            simulator={"swaps_per_minute": 120.0},
        )
        processes.start(stack.anvil_spec(settings), settings.state_dir)
        try:
            deployment = deploy_local_contracts(settings)
            MarketSimulator(settings, deployment).generate_history(args.hours)
            url = settings.local.rpc_url
            addresses = [pool.address for pool in deployment.pools]
            with RpcClient([url]) as rpc:
                head = rpc.block_number()
            step = args.range_blocks
            ranges = [(b, min(b + step - 1, head)) for b in range(1, head + 1, step)]
            provider = HTTPProvider(url)
            timings: dict[str, list[float]] = {"publisher": [], "web3": []}
            counts = {}
            for _ in range(args.rounds):
                with RpcClient([url]) as rpc:
                    started = time.perf_counter()
                    counts["publisher"] = publisher_read(rpc, ranges, addresses)
                    timings["publisher"].append(time.perf_counter() - started)
                started = time.perf_counter()
                counts["web3"] = web3_read(provider, ranges, addresses)
                timings["web3"].append(time.perf_counter() - started)
            if counts["publisher"] != counts["web3"]:
                raise AssertionError(f"the two transports read different things: {counts}")
        finally:
            processes.stop(settings.state_dir, stack.ANVIL)
    logs, headers = counts["publisher"]
    requests = len(ranges) + -(-headers // HEADER_BATCH)
    seconds = {side: statistics.median(t) for side, t in timings.items()}
    figures = {
        "publisher_logs_per_s": {"value": round(logs / seconds["publisher"]), "unit": "logs/s"},
        "web3_logs_per_s": {"value": round(logs / seconds["web3"]), "unit": "logs/s"},
        "publisher_vs_web3": {
            "value": round(seconds["web3"] / seconds["publisher"], 2),
            "unit": "x",
        },
        "logs": {"value": logs, "unit": "logs"},
        "requests": {"value": requests, "unit": "HTTP requests per round"},
    }
    for name, figure in figures.items():
        print(f"{name}: {figure['value']} {figure['unit']}")
    note = (f"anvil, {head} blocks, eth_getLogs over {step}-block ranges of {len(addresses)} "
            f"pools and {headers} headers in batches of {HEADER_BATCH}; median of {args.rounds} "
            "alternating rounds")  # fmt: skip
    print(write_results("rpc_transport", figures, note))


if __name__ == "__main__":
    main()
