"""dexwatch: a streaming detector of abnormal liquidity on Uniswap V3 and SushiSwap pools.

Two floors of this package hold the components (``publishers``, ``beam_pipelines``,
``model``, ``infra``) between them:

- ``dexwatch.core``: the ground floor every component builds on and which imports none of
  them: message and table schemas, feature definitions and the Detector, settings, the
  warehouse interface, the error root, logging and retry.
- ``dexwatch.app``: the top floor, the only code that imports components: the CLI, the
  workflows that wire components together (the local run, bootstraps, backfills,
  promotion) and the terminal views.

``tests/unit/test_architecture.py`` holds the floors in place (docs/architecture.md).
"""

__version__ = "0.1.0"
