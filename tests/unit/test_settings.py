from pathlib import Path

import pytest
import yaml

from dexwatch.core.settings import SettingsError, redact_url
from infra.local.settings import load_local_settings
from tests.conftest import ROOT


def test_defaults_point_at_the_local_stack() -> None:
    settings = load_local_settings()
    assert settings.chain.rpc_urls == ["http://127.0.0.1:8545"]
    assert settings.pubsub.emulator_host == "127.0.0.1:8085"
    assert settings.checkpoint_path == Path(".dexwatch/checkpoints/chain-31337.json")


def test_file_then_environment_then_arguments(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  confirmations: 3\n  batch_blocks: 50\n")
    monkeypatch.setenv("DEXWATCH_CHAIN__BATCH_BLOCKS", "70")
    settings = load_local_settings(config, pubsub={"project": "p"})
    assert settings.chain.confirmations == 3
    assert settings.chain.batch_blocks == 70
    assert settings.pubsub.project == "p"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  confirmatons: 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'chain\.confirmatons'"):
        load_local_settings(config)


def test_unknown_environment_variable_is_named(monkeypatch) -> None:
    monkeypatch.setenv("DEXWATCH_CHAINN__CONFIRMATIONS", "3")
    with pytest.raises(SettingsError, match="DEXWATCH_CHAINN__CONFIRMATIONS"):
        load_local_settings()


def test_invalid_value_names_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  rpc_urls: ['ws://127.0.0.1:8545']\n")
    with pytest.raises(SettingsError, match=r"invalid setting 'chain\.rpc_urls'.*http"):
        load_local_settings(config)


def test_reorg_window_must_exceed_confirmations() -> None:
    with pytest.raises(SettingsError, match="reorg_window"):
        load_local_settings(chain={"confirmations": 10, "reorg_window": 10})


def test_factory_addresses_are_checked_and_lower_cased() -> None:
    address = "0xC0AEe478e3658e2610c5F7A4A2E1777cE9e4f2Ac"
    factory = {"dex": "sushiswap", "protocol": "v2", "address": address, "start_block": 10794229}
    settings = load_local_settings(chain={"factories": [factory]})
    assert settings.chain.factories[0].address == address.lower()
    with pytest.raises(SettingsError, match=r"chain\.factories\.0\.address"):
        load_local_settings(chain={"factories": [{**factory, "address": "0x1234"}]})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_local_settings(tmp_path / "nope.yaml")


def test_redact_url_drops_path_query_and_credentials() -> None:
    url = "https://user:pw@eth-mainnet.example.com:8443/v2/SECRETKEY?key=abc"
    assert redact_url(url) == "https://eth-mainnet.example.com:8443"


# --- subgraph ---------------------------------------------------------------------------------

_V3_SOURCE = {"dex": "uniswap_v3", "protocol": "v3", "subgraph_id": "x" * 20}


def test_subgraph_defaults_read_the_local_standin_for_the_mainnet_subgraphs() -> None:
    subgraph = load_local_settings().subgraph
    assert subgraph.endpoint_url == "http://127.0.0.1:8000"
    assert (subgraph.schedule, subgraph.page_size, subgraph.api_key) == ("0 * * * *", 1000, None)
    v3, sushi = subgraph.sources
    assert (v3.dex, v3.protocol, v3.path) == (
        "uniswap_v3",
        "v3",
        "subgraphs/id/5zvR82QoaXYFyDEKLZ9t6v9adgnptxYpKpSbxtgVENFV",
    )
    assert (sushi.dex, sushi.protocol, sushi.path) == (
        "sushiswap",
        "v2",
        "deployments/id/QmQ2h69a3vnE6N3TN7Ys9K1vpjYiJSi8fexnj1pWpRc6uY",
    )


def test_subgraph_api_key_comes_from_the_environment_and_is_never_shown(monkeypatch) -> None:
    monkeypatch.setenv("DEXWATCH_SUBGRAPH__API_KEY", "TOPSECRETGATEWAYKEY")
    settings = load_local_settings(subgraph={"endpoint_url": None})
    assert settings.subgraph.api_key.get_secret_value() == "TOPSECRETGATEWAYKEY"
    dumped = settings.model_dump_json()
    assert "TOPSECRETGATEWAYKEY" not in dumped + repr(settings) + str(settings)


def test_the_gateway_without_a_key_is_refused_with_what_to_set() -> None:
    with pytest.raises(SettingsError, match=r"'subgraph'.*DEXWATCH_SUBGRAPH__API_KEY"):
        load_local_settings(subgraph={"endpoint_url": None})
    secret = "projects/p/secrets/thegraph/versions/latest"
    settings = load_local_settings(subgraph={"endpoint_url": None, "api_key_secret": secret})
    assert settings.subgraph.api_key_secret == secret
    with pytest.raises(SettingsError, match=r"subgraph\.api_key_secret"):
        load_local_settings(subgraph={"endpoint_url": None, "api_key_secret": "thegraph"})


@pytest.mark.parametrize(
    ("subgraph", "named"),
    [
        ({"page_size": 1001}, r"subgraph\.page_size"),
        ({"schedule": "every hour"}, r"subgraph\.schedule.*cron"),
        ({"gateway_url": "ftp://gateway.example"}, r"subgraph\.gateway_url"),
        ({"sources": [{"dex": "sushiswap", "protocol": "v2"}]}, r"subgraph\.sources\.0.*exactly"),
        ({"sources": [{**_V3_SOURCE, "pools": ["0x12"]}]}, r"subgraph\.sources\.0\.pools"),
        ({"pagesize": 10}, r"unknown setting 'subgraph\.pagesize'"),
    ],
)
def test_bad_subgraph_settings_are_named(subgraph: dict, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_local_settings(subgraph=subgraph)


def test_subgraph_pools_and_checkpoint_path() -> None:
    pool = "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
    settings = load_local_settings(
        subgraph={"sources": [{**_V3_SOURCE, "pools": [pool]}]}, chain={"chain_id": 1}
    )
    assert settings.subgraph.sources[0].pools == [pool.lower()]
    assert settings.subgraph_checkpoint_path == Path(".dexwatch/checkpoints/subgraph-1.json")


def test_slices_hold_whole_blocks_of_a_chain_with_a_fixed_block_time() -> None:
    with pytest.raises(SettingsError, match=r"slice_s 15 is not a whole number.*12, 24, 36"):
        load_local_settings(chain={"block_time_s": 12})
    settings = load_local_settings(chain={"block_time_s": 12}, pipeline={"slice_s": 12})
    assert settings.pipeline.slice_s == 12
    assert load_local_settings().chain.block_time_s is None  # uneven blocks: nothing to check


def test_the_simulator_mines_a_chain_with_a_fixed_block_time_at_that_time() -> None:
    ethereum = ROOT / "infra" / "local" / "markets" / "ethereum-12s.yaml"
    settings = load_local_settings(ethereum)
    assert settings.chain.block_time_s == 12
    assert settings.simulator.block_interval_s == 12  # live
    assert settings.simulator.history_block_interval_s == 12  # and history
    # Without a block time of its own, the local chain keeps its quick live blocks and its
    # longer history blocks.
    default = load_local_settings().simulator
    assert (default.block_interval_s, default.history_block_interval_s) == (2.0, 12)
    with pytest.raises(SettingsError, match=r"simulator.block_interval_s 2 contradicts"):
        load_local_settings(ethereum, simulator={"block_interval_s": 2})
    # Saying the chain's own block time again is not a contradiction.
    same = load_local_settings(ethereum, simulator={"history_block_interval_s": 12})
    assert same.simulator.block_interval_s == 12


def test_the_pool_filter_allows_denies_and_keeps_pools_of_its_tokens() -> None:
    from dexwatch.core.settings import PoolFilter

    a, b, t1, t2, t3 = (f"0x{n:040x}" for n in range(1, 6))
    assert PoolFilter().follows(a, t1, t2)
    allow = PoolFilter(allow=[a.upper().replace("0X", "0x")])
    assert allow.follows(a, t1, t2) and not allow.follows(b, t1, t2)
    deny = PoolFilter(deny=[a])
    assert not deny.follows(a, t1, t2) and deny.follows(b, t1, t2)
    tokens = PoolFilter(tokens=[t3])
    assert tokens.follows(a, t1, t3) and tokens.follows(a, t3, t2) and not tokens.follows(a, t1, t2)
    with pytest.raises(ValueError, match="not a 20-byte hex address"):
        PoolFilter(allow=["0x12"])


def test_with_a_threshold_the_subgraphs_list_decides_and_allow_and_deny_still_win() -> None:
    from dexwatch.core.settings import PoolFilter

    a, b, c, t1, t2, t3 = (f"0x{n:040x}" for n in range(1, 7))
    tvl = PoolFilter(min_tvl_usd=250_000)
    assert tvl.thresholds and not PoolFilter().thresholds
    assert tvl.follows(a, t1, t2, listed={a}) and not tvl.follows(b, t1, t2, listed={a})
    assert not tvl.follows(a, t1, t2)  # no list read yet: nothing listed
    # allow: followed whatever the list says (and no longer "only these"); deny wins.
    mixed = PoolFilter(min_volume_usd_24h=0, allow=[b], deny=[c], tokens=[t1])
    assert mixed.follows(a, t1, t2, {a, c}) and mixed.follows(b, t1, t2, {a, c})
    assert not mixed.follows(c, t1, t2, {a, c}) and not mixed.follows(a, t3, t2, {a})
    assert mixed.eligible(a, t1, t2) and not mixed.eligible(c, t1, t2)
    assert PoolFilter(allow=[b]).eligible(b, t1, t2) and not PoolFilter(allow=[b]).eligible(
        a, t1, t2
    )


_V2_FACTORY = {"dex": "uniswap_v2", "protocol": "v2", "address": "0x" + "5c" * 20}
_V3_FACTORY = {"dex": "uniswap_v3", "protocol": "v3", "address": "0x" + "1f" * 20}


@pytest.mark.parametrize(
    ("chain", "named"),
    [
        ({"pool_filter": {"min_tvl_usd": -1}}, r"chain\.pool_filter\.min_tvl_usd"),
        ({"pool_filter": {"min_volume_usd_24h": "lots"}}, r"chain\.pool_filter\.min_volume"),
        ({"pool_filter": {"refresh_s": 0}}, r"chain\.pool_filter\.refresh_s"),
        ({"pool_filter": {"min_tvl": 1e6}}, r"unknown setting 'chain\.pool_filter\.min_tvl'"),
        # The local subgraphs are Uniswap V3's and SushiSwap's: none lists Uniswap V2 pairs.
        (
            {"factories": [_V3_FACTORY, _V2_FACTORY], "pool_filter": {"min_tvl_usd": 1e6}},
            r"min_tvl_usd asks the subgraphs.*no subgraph of uniswap_v2 \(v2\)",
        ),
        (
            {"factories": [{**_V2_FACTORY, "dex": "sushiswap", "protocol": "v3"}],
             "pool_filter": {"min_volume_usd_24h": 1e5}},
            r"min_volume_usd_24h asks.*subgraph\.sources has no subgraph of sushiswap \(v3\)",
        ),
    ],
)  # fmt: skip
def test_bad_pool_list_settings_are_named(chain: dict, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_local_settings(chain=chain)


def test_a_threshold_reads_the_subgraphs_of_the_factories_dexes() -> None:
    pool_filter = {"min_tvl_usd": 1e6, "min_volume_usd_24h": 5e5, "refresh_s": 600}
    settings = load_local_settings(chain={"factories": [_V3_FACTORY], "pool_filter": pool_filter})
    assert settings.chain.pool_filter.min_tvl_usd == 1e6
    assert settings.chain.pool_filter.refresh_s == 600
    defaults = load_local_settings().chain.pool_filter
    assert (defaults.refresh_s, defaults.min_tvl_usd, defaults.thresholds) == (3600, None, False)
    # A Uniswap V2 factory with a subgraph of its own.
    v2_source = {"dex": "uniswap_v2", "protocol": "v2", "subgraph_id": "y" * 20}
    settings = load_local_settings(
        chain={"factories": [_V2_FACTORY], "pool_filter": pool_filter},
        subgraph={"sources": [v2_source]},
    )
    assert settings.subgraph.sources[0].dex == "uniswap_v2"
    # Without factories (the local stack fills them) there is nothing to check yet: the
    # publisher checks the factories it is given.
    assert load_local_settings(chain={"pool_filter": pool_filter}).chain.pool_filter.thresholds


MULTI_CHAIN = """
pipeline:
  slice_s: 12
chains:
  - chain_id: 137
    rpc_urls: ["https://polygon.example.org/KEY1", "https://polygon-backup.example.org"]
    block_time_s: 2
  - chain_id: 1
    rpc_urls: ["https://eth.example.org/KEY2"]
    block_time_s: 12
    confirmations: 3
"""


def test_several_chains_each_with_its_name_explorer_and_checkpoint(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text(MULTI_CHAIN)
    settings = load_local_settings(config)
    assert [(c.name, c.chain_id) for c in settings.chains] == [("polygon", 137), ("ethereum", 1)]
    assert settings.explorer(137) == "https://polygonscan.com"
    polygon, ethereum = settings.for_chain("polygon"), settings.for_chain(1)
    assert polygon.chain.rpc_urls[1] == "https://polygon-backup.example.org"
    assert ethereum.chain.confirmations == 3
    assert polygon.checkpoint_path != ethereum.checkpoint_path
    # A component that works on one chain must be told which.
    with pytest.raises(SettingsError, match=r"2 chains are configured \(polygon, ethereum\)"):
        settings.chain  # noqa: B018
    with pytest.raises(SettingsError, match="no chain 'base'.*polygon \\(137\\), ethereum \\(1\\)"):
        settings.for_chain("base")


def test_the_one_chain_form_is_a_list_of_one_from_file_environment_and_arguments(
    tmp_path: Path, monkeypatch
) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  chain_id: 10\n  confirmations: 3\n")
    monkeypatch.setenv("DEXWATCH_CHAIN__RETRY__TIMEOUT_S", "4.5")
    monkeypatch.setenv("DEXWATCH_CHAIN__RPC_URLS", '["https://op.example.org"]')
    settings = load_local_settings(config)
    (chain,) = settings.chains
    assert (chain.name, chain.confirmations, chain.retry.timeout_s) == ("optimism", 3, 4.5)
    assert chain.rpc_urls == ["https://op.example.org"]
    assert settings.chain is chain
    assert load_local_settings(chain={"chain_id": 8453}).chain.name == "base"


def test_chains_given_twice_or_alike_are_refused(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text(MULTI_CHAIN)
    monkeypatch.setenv("DEXWATCH_CHAIN__CONFIRMATIONS", "1")
    with pytest.raises(SettingsError, match="give chain .* or chains .*, not both"):
        load_local_settings(config)
    monkeypatch.delenv("DEXWATCH_CHAIN__CONFIRMATIONS")
    config.write_text(MULTI_CHAIN.replace("chain_id: 1\n", "chain_id: 137\n"))
    with pytest.raises(SettingsError, match="chain_id 137 is given to two chains"):
        load_local_settings(config)
    # Slices must hold whole blocks of every chain.
    config.write_text(MULTI_CHAIN.replace("slice_s: 12", "slice_s: 15"))
    with pytest.raises(SettingsError, match="not a whole number of polygon's 2 s blocks"):
        load_local_settings(config)
    # The keys of a one-chain form are named as written.
    config.write_text("chain:\n  confirmatons: 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'chain\.confirmatons'"):
        load_local_settings(config)


def test_the_two_chain_example_runs_an_anvil_per_local_chain_at_its_block_time() -> None:
    settings = load_local_settings(ROOT / "infra" / "local" / "chains" / "two-chains.yaml")
    local, twelve = settings.local_chains()
    assert (local.chain.name, local.local.anvil_port, local.local.chain_id) == (
        "local",
        8545,
        31337,
    )
    assert (twelve.chain.name, twelve.local.anvil_port, twelve.local.chain_id) == (
        "local-12s", 8546, 31338,
    )  # fmt: skip
    # The 12 s chain is mined at 12 s, live and in history; the other keeps the simulator's.
    assert (twelve.simulator.block_interval_s, twelve.simulator.history_block_interval_s) == (
        12,
        12,
    )
    assert local.simulator == settings.simulator
    assert local.deployment_path.name == "deployment.json"
    assert twelve.deployment_path.name == "deployment-31338.json"
    assert local.checkpoint_path != twelve.checkpoint_path
    # The 12 s chain's events on a topic of its own, read beside the shared one.
    assert (local.chain.events_topic, twelve.chain.events_topic) == (
        "pool-events", "pool-events-local-12s",
    )  # fmt: skip
    assert settings.event_subscriptions("pool-events-monitor") == [
        "pool-events-monitor", "pool-events-local-12s-monitor",
    ]  # fmt: skip
    assert settings.event_subscription(31338, "pool-events-pipeline") == (
        "pool-events-local-12s-pipeline"
    )
    assert settings.event_subscription(31337, "pool-events-pipeline") == "pool-events-pipeline"
    # A chain read from a remote node is watched, not run by the local stack.
    remote = load_local_settings(
        pipeline={"slice_s": 12},
        chains=[{"chain_id": 31337}, {"chain_id": 1, "rpc_urls": ["https://eth.example/KEY"]}],
    )
    assert [c.chain.chain_id for c in remote.local_chains()] == [31337]


def test_each_local_chain_needs_subgraphs_of_its_own_for_the_local_stand_in() -> None:
    example = ROOT / "infra" / "local" / "chains" / "two-chains.yaml"
    local, twelve = load_local_settings(example).subgraph_chains()
    assert [s.path for s in local.subgraph.sources] == [
        s.path for s in load_local_settings().subgraph.sources
    ]
    assert [s.path for s in twelve.subgraph.sources] == [
        "subgraphs/id/LocalTwelveSecondUniswapV3",
        "subgraphs/id/LocalTwelveSecondSushiSwap",
    ]
    # Without them the second chain would be served the first one's hours.
    shared = yaml.safe_load(example.read_text())
    del shared["chains"][1]["subgraph_sources"]
    settings = load_local_settings(**shared)
    with pytest.raises(SettingsError, match="local and local-12s read the same subgraph"):
        settings.subgraph_chains()
    # A chain only watched (a remote node) is not the stand-in's.
    shared["chains"][1]["rpc_urls"] = ["https://eth.example/KEY"]
    assert [c.chain.name for c in load_local_settings(**shared).subgraph_chains()] == ["local"]


def test_each_chain_reads_its_own_subgraphs_or_the_subgraph_sections(tmp_path: Path) -> None:
    polygon_v3 = {"dex": "uniswap_v3", "protocol": "v3", "subgraph_id": "PolygonV3Subgraph0001"}
    config = tmp_path / "dexwatch.yaml"
    config.write_text(
        MULTI_CHAIN.replace(
            "    block_time_s: 2\n",
            "    block_time_s: 2\n    subgraph_sources:\n"
            "      - {dex: uniswap_v3, protocol: v3, subgraph_id: PolygonV3Subgraph0001}\n",
        )
    )
    settings = load_local_settings(config)
    polygon, ethereum = settings.for_chain("polygon"), settings.for_chain("ethereum")
    assert [s.model_dump(exclude_defaults=True) for s in polygon.subgraph.sources] == [polygon_v3]
    # Ethereum has none of its own: the subgraph section's (mainnet's by default).
    assert ethereum.subgraph.sources == settings.subgraph.sources
    assert polygon.subgraph_checkpoint_path.name == "subgraph-137.json"
    # The one-chain form: the chain's subgraphs are the section's, and two lists are refused.
    one = load_local_settings(chain={"chain_id": 137, "subgraph_sources": [polygon_v3]})
    assert [s.subgraph_id for s in one.subgraph.sources] == ["PolygonV3Subgraph0001"]
    with pytest.raises(SettingsError, match="give subgraph.sources or the chain's subgraph_"):
        load_local_settings(
            chain={"chain_id": 137, "subgraph_sources": [polygon_v3]},
            subgraph={"sources": [{**polygon_v3, "subgraph_id": "AnotherSubgraph0002"}]},
        )
    # A pool-list threshold is checked against the chain's own subgraphs: no SushiSwap here.
    sushi = {"dex": "sushiswap", "protocol": "v2", "address": "0x" + "c" * 40}
    with pytest.raises(SettingsError, match="no subgraph of sushiswap"):
        load_local_settings(
            chain={
                "chain_id": 137, "subgraph_sources": [polygon_v3], "factories": [sushi],
                "pool_filter": {"min_tvl_usd": 1e5},
            }
        )  # fmt: skip
