"""Terraform's generated inputs: ``infra/terraform/generated/tables.json`` from the one
declaration of the warehouse tables (``dexwatch.core.schemas.tables.TABLES``).

    python -m infra.gcp.terraform_inputs           # write the file
    python -m infra.gcp.terraform_inputs --check   # exit 1 when the committed file differs

Terraform builds one BigQuery table per entry (``bigquery.tf``): schema, day partitions on
the partition column, clustering. Pub/Sub needs no generated file: Terraform reads
``pubsub.yaml`` and ``pool_event.avsc`` itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dexwatch.core.schemas.tables import TABLES, Table

ROOT = Path(__file__).resolve().parents[2]
TABLES_FILE = ROOT / "infra" / "terraform" / "generated" / "tables.json"
COMMAND = "python -m infra.gcp.terraform_inputs"


def table_entry(table: Table) -> dict:
    # BigQuery drops an empty field description, which Terraform would then show as a change
    # on every plan: the generated schema leaves them out.
    fields = [
        {key: value for key, value in field.items() if key != "description" or value}
        for field in table.bigquery_schema()["fields"]
    ]
    return {
        "description": table.description,
        "schema": fields,
        "partition_by": table.partition_by,
        "cluster_by": list(table.cluster_by),
        "natural_key": list(table.natural_key),
    }


def tables_json() -> str:
    """The file's text: every table of TABLES, in declaration order."""
    document = {
        "generated_by": f"{COMMAND} from dexwatch.core.schemas.tables.TABLES; do not edit",
        "tables": {name: table_entry(table) for name, table in TABLES.items()},
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def check(path: Path = TABLES_FILE) -> str | None:
    """None when ``path`` holds what the declarations generate, else what is wrong.

    Args:
        path: the committed file.
    """
    expected = tables_json()
    try:
        current = path.read_text()
    except FileNotFoundError:
        return f"{path} is missing: run `{COMMAND}`"
    if current != expected:
        return f"{path} is out of date with dexwatch.core.schemas.tables: run `{COMMAND}`"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed file is out of date"
    )
    parser.add_argument("--path", type=Path, default=TABLES_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        problem = check(args.path)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{args.path} is up to date")
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(tables_json())
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
