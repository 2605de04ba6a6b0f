"""The floors of the house (docs/architecture.md), read from the code's own imports.

- ``dexwatch.core`` (the ground floor) imports no component and not the application.
- ``publishers``, ``beam_pipelines``, ``model`` and ``infra`` import the core and
  themselves only: never each other, never the application. So production code paths
  (publishers, pipelines, model) cannot read the local stack's settings or its deployment
  manifest, which live in ``infra.local``.
- ``dexwatch.app`` (the top floor) may import everything, except its services: the Slack
  consumer (``dexwatch.app.slack``, its own Cloud Run service) imports the core and itself
  only, so its image needs no component.
Every import counts: at module level, inside functions, under TYPE_CHECKING.

Also: nothing imported from another package starts with an underscore, and no source
module is over 500 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("dexwatch", "publishers", "beam_pipelines", "model", "infra")
# Services of the top floor that stand on the core alone.
SERVICES = ("dexwatch.app.slack",)
COMPONENTS = ("publishers", "beam_pipelines", "model", "infra")
MAX_LINES = 500


def floor(module: str) -> str | None:
    """The floor a module of ours stands on (None for third-party and standard modules)."""
    top = module.split(".")[0]
    if top in COMPONENTS:
        return top
    if module.startswith("dexwatch.core"):
        return "core"
    for service in SERVICES:
        if module == service or module.startswith(service + "."):
            return service
    if module.startswith("dexwatch.app") or module in ("dexwatch", "dexwatch.__main__"):
        return "app"
    return None


def may_import(importer: str, imported: str) -> bool:
    """Whether a module on floor ``importer`` may import one on floor ``imported``."""
    if importer == "app":
        return True
    if importer == "core":
        return imported == "core"
    if importer in SERVICES:
        return imported in ("core", importer)
    return imported in ("core", importer)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[Path]:
    return sorted(p for package in SOURCE_PACKAGES for p in (ROOT / package).rglob("*.py"))


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import in ``source``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield node.lineno, base, [alias.name for alias in node.names]


def layering_violations(path: Path, source: str) -> list[str]:
    module = module_name(path)
    own = floor(module)
    found = []
    for line, imported, _ in imports(source, module, path.name == "__init__.py"):
        target = floor(imported)
        if own is not None and target is not None and not may_import(own, target):
            found.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {imported} ({target})")
    return found


def private_import_violations(path: Path, source: str) -> list[str]:
    """Underscored names or modules imported from another package of ours."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for line, imported, names in imports(source, module, path.name == "__init__.py"):
        if floor(imported) is None:
            continue
        imported_package = imported.rpartition(".")[0]
        same_package = imported == package or imported_package == package
        private_parts = [
            p for p in imported.split(".") if p.startswith("_") and not p.startswith("__")
        ]
        private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if not same_package and (private_parts or private_names):
            shown = ", ".join(private_parts + private_names)
            found.append(f"{path.relative_to(ROOT)}:{line}: {shown} from {imported}")
    return found


def test_each_floor_imports_only_the_floors_below_it() -> None:
    found = [v for p in source_files() for v in layering_violations(p, p.read_text())]
    assert not found, "imports against the floors:\n" + "\n".join(found)


def test_nothing_private_is_imported_across_packages() -> None:
    found = [v for p in source_files() for v in private_import_violations(p, p.read_text())]
    assert not found, "private names imported across packages:\n" + "\n".join(found)


def test_no_source_module_is_over_500_lines() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in source_files()}
    over = [f"{p.relative_to(ROOT)}: {n} lines" for p, n in sizes.items() if n > MAX_LINES]
    assert not over, "modules over 500 lines:\n" + "\n".join(over)


@pytest.mark.parametrize(
    ("path", "source", "broken"),
    [
        ("dexwatch/core/settings.py", "from infra.local.settings import LocalSettings", True),
        ("dexwatch/core/x.py", "def f():\n    import model.registry", True),
        ("publishers/chain/x.py", "from infra.local.deployment import LocalDeployment", True),
        ("beam_pipelines/x.py", "from dexwatch.app.cli import app", True),
        (
            "model/x.py",
            "from . import registry\nfrom dexwatch.core.detector import Detector",
            False,
        ),
        ("dexwatch/app/cli/x.py", "from publishers.chain import run", False),
        ("dexwatch/app/slack/x.py", "from publishers.pubsub import PubSubSink", True),
        ("dexwatch/app/slack/x.py", "from dexwatch.app.workflows import local_run", True),
        ("dexwatch/app/slack/x.py", "from dexwatch.app.slack.ledger import PostLedger", False),
        ("dexwatch/app/cli/x.py", "from dexwatch.app.slack.service import serve", False),
    ],
)
def test_the_layering_check_sees_what_it_must(path: str, source: str, broken: bool) -> None:
    assert bool(layering_violations(ROOT / path, source)) is broken


@pytest.mark.parametrize(
    ("path", "source", "broken"),
    [
        ("dexwatch/app/x.py", "from infra.local import _chain", True),
        ("infra/local/x.py", "from infra.local.evm.rpc import _BATCH_SIZE", True),
        ("infra/local/evm/x.py", "from infra.local.evm.rpc import _BATCH_SIZE", False),
        ("beam_pipelines/x.py", "from beam_pipelines.local_runner._journal import J", True),
    ],
)
def test_the_private_import_check_sees_what_it_must(path: str, source: str, broken: bool) -> None:
    assert bool(private_import_violations(ROOT / path, source)) is broken
