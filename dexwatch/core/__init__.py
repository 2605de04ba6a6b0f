"""The ground floor: what publishers, pipelines, model and infra share, importing none of them.

- ``schemas``: the messages (pool event, pool hour, alert), the Pub/Sub declaration and the
  warehouse tables; stable contracts that production enforces too.
- ``features`` and ``detector``: the feature definitions and the scoring shared by
  training and serving.
- ``settings``: the production configuration; ``warehouse``: the one read/write interface
  with its DuckDB and BigQuery backends; ``errors``: the one exception root; ``logs``,
  ``retry``, ``files``: plumbing every component uses.
"""
