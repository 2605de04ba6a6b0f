"""dexwatch: the CLI and the contracts shared by publishers, pipelines and model.

Everything under ``dexwatch.contracts`` is a stable contract (message schemas, topic
declarations, table schemas, feature definitions). ``dexwatch.settings`` is the one
configuration model. Nothing here imports ``publishers``, ``beam_pipelines``, ``model``
or ``infra`` except ``dexwatch.cli``, which wires them together.
"""

__version__ = "0.1.0"
