"""The CI/CD workflow (.github/workflows/ci.yml) does what the README says: the test job runs
exactly `make test`; a v* tag deploys after it, signed in by workload identity (no key), with
the Terraform outputs and variables that exist. GitHub runs it; this checks its shape."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import yaml
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
TERRAFORM = ROOT / "infra" / "terraform"


def workflow() -> dict:
    parsed = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    parsed["on"] = parsed.pop(True, parsed.get("on"))
    return parsed


def _terraform_names(kind: str) -> set[str]:
    options = SerializationOptions(explicit_blocks=False, strip_string_quotes=True)
    names = set()
    for path in TERRAFORM.glob("*.tf"):
        with path.open() as f:
            for block in hcl2.load(f, serialization_options=options).get(kind, []):
                names |= set(block)
    return names


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_every_push_and_pull_request_runs_make_test():
    flow = workflow()
    assert set(flow["on"]) == {"push", "pull_request"}
    assert flow["on"]["push"]["tags"] == ["v*"]
    test = flow["jobs"]["test"]
    assert re.search(r"^make test$", _runs(test), re.M)
    assert test["container"] == "debian:12" and test["timeout-minutes"] <= 90
    # The README's test command is CI's: .ci/run calls the same.
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_a_tag_deploys_after_the_tests_with_workload_identity_and_no_key():
    flow = workflow()
    deploy = flow["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    assert deploy["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert deploy["permissions"]["id-token"] == "write"
    (auth,) = [
        s for s in deploy["steps"] if s.get("uses", "").startswith("google-github-actions/auth")
    ]
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    text = WORKFLOW.read_text()
    assert "credentials_json" not in text and "secrets." not in text


def test_the_deploy_job_uses_outputs_and_variables_terraform_has():
    runs = _runs(workflow()["jobs"]["deploy"])
    assert "terraform output -json" in runs
    assert re.search(r"dexwatch deploy --tag \"\$TAG\" --outputs \S+", runs)
    for variable in re.findall(r'-var="(\w+)=', runs):
        assert variable in _terraform_names("variable"), variable
    # The identity the workflow signs in with is what Terraform outputs for it.
    assert {"workload_identity_provider", "deployer_service_account"} <= _terraform_names("output")
