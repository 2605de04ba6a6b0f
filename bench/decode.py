"""Decode throughput of the chain publisher against eth_abi and web3, side by side.

Starts an anvil of its own, deploys the local contracts, lets the market simulator mine
history until there are at least MIN_LOGS real Uniswap V2/SushiSwap and V3 pool logs,
fetches them raw with eth_getLogs, stops anvil, and then on one core times three decoders
over the same logs:

- dexwatch: ``publishers.chain.events.decode_pool_logs`` (raw logs → PoolEvents), the
  publisher's own path;
- eth_abi: ``eth_abi.decode`` of data and topics, the event looked up by topic0;
- web3: ``contract.events.<Event>().process_log``, the event looked up by topic0 (logs are
  converted to web3's format beforehand, outside the timing, as web3's get_logs would).

All three are first checked to decode every log to the same values. Writes
``bench/results/decode.json``; ``events_per_s`` is the publisher's path on V2 events.

    .venv/bin/python bench/decode.py [--min-logs N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import eth_abi
from _results import write_results  # noqa: I001 - bench/ is on sys.path when run
from web3 import Web3
from web3._utils.method_formatters import log_entry_formatter

from dexwatch.core.settings import Settings
from infra.local import processes, stack
from infra.local.deploy import deploy_local_contracts
from infra.local.deployment import LocalDeployment
from infra.local.market import MarketSimulator
from infra.local.settings import load_local_settings  # noqa: E402
from publishers.chain.events import POOL_EVENT_TOPICS, POOL_EVENTS, Pool, decode_pool_logs
from publishers.chain.rpc import RpcClient

ROOT = Path(__file__).resolve().parent.parent
MIN_LOGS = 5_000
# Simulated time mined per round until both protocols have MIN_LOGS logs.
HISTORY_HOURS = 0.4
# A busy market, so that a round yields thousands of logs.
SWAPS_PER_MINUTE = 120.0

Decoder = Callable[[list[Any]], Any]


def _settings(state_dir: Path) -> Settings:
    return load_local_settings(
        state_dir=str(state_dir),
        local={
            "anvil_port": processes.free_port(),
            "node_modules": str(ROOT / "node_modules"),
        },
        simulator={"swaps_per_minute": SWAPS_PER_MINUTE},
    )


def fetch_logs(min_logs: int) -> tuple[dict[str, list[dict]], dict[str, Pool], dict[int, int]]:
    """(raw logs by protocol, pools by address, block timestamps) from a fresh local chain."""
    with tempfile.TemporaryDirectory() as state:
        settings = _settings(Path(state))
        processes.start(stack.anvil_spec(settings), settings.state_dir)
        try:
            deployment = deploy_local_contracts(settings)
            simulator = MarketSimulator(settings, deployment)
            # One eth_getLogs of the whole history: more than the usual request timeout.
            slow = settings.chain.retry.model_copy(update={"timeout_s": 120})
            with RpcClient([settings.local.rpc_url], retry=slow) as rpc:
                while True:
                    simulator.generate_history(HISTORY_HOURS)
                    head = rpc.block_number()
                    addresses = [pool.address for pool in deployment.pools]
                    logs = rpc.get_logs(0, head, addresses, [POOL_EVENT_TOPICS])
                    by_protocol = _by_protocol(logs, deployment)
                    counts = {p: len(found) for p, found in by_protocol.items()}
                    print(f"mined to block {head}: {counts} pool logs", file=sys.stderr)
                    if min(counts.values()) >= min_logs:
                        break
                blocks = {int(log["blockNumber"], 16) for log in logs}
                headers = rpc.get_headers(blocks)
        finally:
            processes.stop(settings.state_dir, stack.ANVIL)
    pools = {
        pool.address: Pool(pool.address, pool.dex, pool.protocol, "", deployment.deployed_at_block)
        for pool in deployment.pools
    }
    timestamps = {n: header.timestamp for n, header in headers.items() if header}
    return by_protocol, pools, timestamps


def _by_protocol(logs: list[dict], deployment: LocalDeployment) -> dict[str, list[dict]]:
    protocol = {pool.address: pool.protocol for pool in deployment.pools}
    split: dict[str, list[dict]] = {"v2": [], "v3": []}
    for log in logs:
        split[protocol[log["address"]]].append(log)
    return split


# --- the three decoders ---------------------------------------------------------------------


def dexwatch_decoder(pools: dict[str, Pool], timestamps: dict[int, int]) -> Decoder:
    def decode(logs: list[dict]) -> list[dict[str, str]]:
        decoded = decode_pool_logs(logs, 31337, pools, timestamps)
        if decoded.rejected:
            raise AssertionError(f"dexwatch rejected {decoded.rejected[0]}")
        return [event.args for event in decoded.events]

    return decode


def eth_abi_decoder() -> Decoder:
    """eth_abi.decode of the data words and of each indexed topic, the event by topic0."""
    table = {}
    for events in POOL_EVENTS.values():
        for topic0, decoder in events.items():
            inputs = decoder.abi["inputs"]
            table[topic0] = (
                [p["name"] for p in inputs if p["indexed"]],
                [p["type"] for p in inputs if p["indexed"]],
                [p["name"] for p in inputs if not p["indexed"]],
                [p["type"] for p in inputs if not p["indexed"]],
            )

    def decode(logs: list[dict]) -> list[dict[str, Any]]:
        out = []
        for log in logs:
            topics = log["topics"]
            indexed_names, indexed_types, data_names, data_types = table[topics[0]]
            values = eth_abi.decode(data_types, bytes.fromhex(log["data"][2:]))
            args = dict(zip(data_names, values, strict=True))
            for name, abi_type, topic in zip(indexed_names, indexed_types, topics[1:], strict=True):
                args[name] = eth_abi.decode([abi_type], bytes.fromhex(topic[2:]))[0]
            out.append(args)
        return out

    return decode


def web3_decoder() -> Decoder:
    """web3's ContractEvent.process_log, on logs already in web3's format (see prepare)."""
    w3 = Web3()
    by_topic = {}
    for events in POOL_EVENTS.values():
        contract = w3.eth.contract(abi=[decoder.abi for decoder in events.values()])
        for topic0, decoder in events.items():
            by_topic[topic0] = contract.events[decoder.name]()

    def decode(logs: list[Any]) -> list[dict[str, Any]]:
        return [
            dict(by_topic["0x" + log["topics"][0].hex()].process_log(log)["args"]) for log in logs
        ]

    return decode


def _normalized(args: dict[str, Any]) -> dict[str, str]:
    return {k: v.lower() if isinstance(v, str) else str(v) for k, v in args.items()}


# --- measuring ------------------------------------------------------------------------------


def _rates(runs: dict[Any, tuple[Decoder, Sequence[Any]]], repeats: int) -> dict[Any, float]:
    """Events per second of each (decoder, logs), the median of ``repeats`` timed passes.

    The passes are interleaved, so a slower moment of a shared machine hits every decoder
    alike rather than one of them."""
    seconds: dict[Any, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, (decode, logs) in runs.items():
            started = time.perf_counter()
            decode(list(logs))
            seconds[key].append(time.perf_counter() - started)
    return {key: len(runs[key][1]) / statistics.median(seconds[key]) for key in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-logs", type=int, default=MIN_LOGS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    by_protocol, pools, timestamps = fetch_logs(args.min_logs)
    # The same number of logs of each protocol, in chain order.
    sets = {protocol: logs[: args.min_logs] for protocol, logs in by_protocol.items()}
    decoders = {
        "dexwatch": (dexwatch_decoder(pools, timestamps), lambda logs: logs),
        "eth_abi": (eth_abi_decoder(), lambda logs: logs),
        "web3": (web3_decoder(), lambda logs: [log_entry_formatter(log) for log in logs]),
    }
    inputs = {
        (name, protocol): prepare(logs)
        for name, (_, prepare) in decoders.items()
        for protocol, logs in sets.items()
    }
    for protocol in sets:
        outputs = [
            [_normalized(a) for a in decode(inputs[name, protocol])]
            for name, (decode, _) in decoders.items()
        ]
        if not outputs[0] == outputs[1] == outputs[2]:
            raise SystemExit(f"the decoders disagree on {protocol} logs")

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    runs = {
        (name, protocol): (decode, inputs[name, protocol])
        for name, (decode, _) in decoders.items()
        for protocol in sets
    }
    rates = _rates(runs, args.repeats)

    print(f"\ndecode throughput, {args.min_logs} logs per protocol, median of {args.repeats}")
    print(f"{'decoder':<10} {'V2 events/s':>12} {'V3 events/s':>12}")
    for name in decoders:
        print(f"{name:<10} {rates[name, 'v2']:>12,.0f} {rates[name, 'v3']:>12,.0f}")
    ours = rates["dexwatch", "v2"]
    figures = {
        "events_per_s": {"value": round(ours), "unit": "events/s"},
        "speedup_vs_web3": {"value": round(ours / rates["web3", "v2"], 1), "unit": "x"},
        "speedup_vs_eth_abi": {"value": round(ours / rates["eth_abi", "v2"], 1), "unit": "x"},
        "events_per_s_v3": {"value": round(rates["dexwatch", "v3"]), "unit": "events/s"},
        "speedup_vs_web3_v3": {
            "value": round(rates["dexwatch", "v3"] / rates["web3", "v3"], 1),
            "unit": "x",
        },
    }
    print(
        f"V2: {figures['speedup_vs_web3']['value']}x web3, "
        f"{figures['speedup_vs_eth_abi']['value']}x eth_abi; "
        f"V3: {figures['speedup_vs_web3_v3']['value']}x web3"
    )
    path = write_results("decode", figures, note="measured on 1 core")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
