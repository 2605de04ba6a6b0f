from pathlib import Path

import pytest

from dexwatch.settings import SettingsError, load_settings, redact_url


def test_defaults_point_at_the_local_stack() -> None:
    settings = load_settings()
    assert settings.chain.rpc_urls == ["http://127.0.0.1:8545"]
    assert settings.pubsub.emulator_host == "127.0.0.1:8085"
    assert settings.checkpoint_path == Path(".dexwatch/checkpoints/chain-31337.json")


def test_file_then_environment_then_arguments(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  confirmations: 3\n  batch_blocks: 50\n")
    monkeypatch.setenv("DEXWATCH_CHAIN__BATCH_BLOCKS", "70")
    settings = load_settings(config, pubsub={"project": "p"})
    assert settings.chain.confirmations == 3
    assert settings.chain.batch_blocks == 70
    assert settings.pubsub.project == "p"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  confirmatons: 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'chain\.confirmatons'"):
        load_settings(config)


def test_unknown_environment_variable_is_named(monkeypatch) -> None:
    monkeypatch.setenv("DEXWATCH_CHAINN__CONFIRMATIONS", "3")
    with pytest.raises(SettingsError, match="DEXWATCH_CHAINN__CONFIRMATIONS"):
        load_settings()


def test_invalid_value_names_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  rpc_urls: ['ws://127.0.0.1:8545']\n")
    with pytest.raises(SettingsError, match=r"invalid setting 'chain\.rpc_urls'.*http"):
        load_settings(config)


def test_reorg_window_must_exceed_confirmations() -> None:
    with pytest.raises(SettingsError, match="reorg_window"):
        load_settings(chain={"confirmations": 10, "reorg_window": 10})


def test_factory_addresses_are_checked_and_lower_cased() -> None:
    address = "0xC0AEe478e3658e2610c5F7A4A2E1777cE9e4f2Ac"
    factory = {"dex": "sushiswap", "protocol": "v2", "address": address, "start_block": 10794229}
    settings = load_settings(chain={"factories": [factory]})
    assert settings.chain.factories[0].address == address.lower()
    with pytest.raises(SettingsError, match=r"chain\.factories\.0\.address"):
        load_settings(chain={"factories": [{**factory, "address": "0x1234"}]})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_redact_url_drops_path_query_and_credentials() -> None:
    url = "https://user:pw@eth-mainnet.example.com:8443/v2/SECRETKEY?key=abc"
    assert redact_url(url) == "https://eth-mainnet.example.com:8443"
