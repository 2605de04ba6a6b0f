"""The warehouse's views (``views/<name>.sql``) and documented example queries
(``queries/<name>.sql``), rendered for BigQuery and for the local DuckDB file.

A view file holds one SELECT in BigQuery standard SQL that reads tables only, named
`` `${project}.${dataset}.<table>` ``: Terraform's ``templatefile`` fills them in, and
``bigquery_view_sql`` does the same here. The SQL keeps to what both dialects read alike
(``CAST(ts AS DATE)``, ``CURRENT_TIMESTAMP - INTERVAL 7 DAY``, ``COUNT(CASE ...)``,
``STRING_AGG(DISTINCT x, ', ' ORDER BY x)``, ``ROW_NUMBER()`` in a subquery); the DuckDB
rendering rewrites only what cannot be shared (``DUCKDB_REWRITES``). The example queries read
the views by their bare names (BigQuery with the dataset as default dataset) and need no
rewrite.

The views deduplicate: BigQuery's streaming sink appends every pane while DuckDB upserts on
the natural key, so each view takes the latest row per natural key and both give one answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

VIEWS_DIR = Path(__file__).parent / "views"
QUERIES_DIR = Path(__file__).parent / "queries"

_TABLE_REF = re.compile(r"`\$\{project\}\.\$\{dataset\}\.(\w+)`")

# DuckDB's spelling of what BigQuery spells otherwise: (pattern, replacement).
DUCKDB_REWRITES: tuple[tuple[str, str], ...] = (
    # BigQuery's JSON_VALUE gives the scalar as a string; DuckDB's json_value gives it as
    # JSON ('"x"'), its json_extract_string as the string.
    (r"\bJSON_VALUE\(", "json_extract_string("),
    # BigQuery's SAFE_CAST (NULL where the value does not convert) is DuckDB's TRY_CAST.
    (r"\bSAFE_CAST\(", "TRY_CAST("),
)


class _TerraformTemplate(Template):
    """Only ``${name}`` (and ``$${`` for a literal ``${``), as Terraform's templatefile reads;
    a ``$`` otherwise (a JSON path's ``'$[0]'``) is text."""

    pattern = r"""
    \$(?:
      (?P<escaped>\$)(?=\{) |
      \{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)\} |
      (?P<named>(?!)) |
      (?P<invalid>\{)
    )
    """


def _names(directory: Path) -> list[str]:
    if not directory.is_dir():
        # Not silently none: the package was installed without its SQL (package-data).
        raise FileNotFoundError(f"{directory} is missing: the package was built without it")
    return sorted(p.stem for p in directory.glob("*.sql"))


def view_names() -> list[str]:
    """The views, by name (their files' stems), sorted."""
    return _names(VIEWS_DIR)


def query_names() -> list[str]:
    """The documented example queries, by name, sorted."""
    return _names(QUERIES_DIR)


def view_sql(name: str) -> str:
    """The view's SQL as written: BigQuery's, tables as `` `${project}.${dataset}.t` ``."""
    return (VIEWS_DIR / f"{name}.sql").read_text()


def query_sql(name: str) -> str:
    """A documented example query as written (the same text for BigQuery and DuckDB)."""
    return (QUERIES_DIR / f"{name}.sql").read_text()


def view_tables(name: str) -> set[str]:
    """The tables the view reads."""
    return set(_TABLE_REF.findall(view_sql(name)))


def bigquery_view_sql(name: str, project: str, dataset: str) -> str:
    """The view's SQL for BigQuery, as Terraform's ``templatefile`` renders it.

    Args:
        name: the view.
        project: the GCP project of the dataset.
        dataset: the BigQuery dataset holding the tables.
    """
    return _TerraformTemplate(view_sql(name)).substitute(project=project, dataset=dataset)


def duckdb_view_sql(name: str) -> str:
    """The view's SQL for the local DuckDB warehouse: tables by bare name, and
    ``DUCKDB_REWRITES`` applied."""
    sql = _TABLE_REF.sub(r'"\1"', view_sql(name))
    for pattern, replacement in DUCKDB_REWRITES:
        sql = re.sub(pattern, replacement, sql)
    if "`" in sql or "${" in sql:
        raise ValueError(f"view {name}: a table is not named `${{project}}.${{dataset}}.t`")
    return sql
