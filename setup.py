"""Dataflow ships local code to its workers with ``--setup_file ./setup.py``; the package
metadata itself lives in pyproject.toml, the choice of packages here.

With ``DATAFLOW_WORKER_PACKAGE=1`` (the launcher sets it before Beam stages the package) the
distribution holds only what the workers run: the pipeline and the core it stands on. The
CLI, the publishers, the model tooling and the local stack stay home.
"""

import os
import tempfile

from setuptools import find_packages, setup

COMPONENTS = ("publishers", "beam_pipelines", "model", "infra")
EVERYTHING = ["dexwatch", "dexwatch.*", *(f"{component}*" for component in COMPONENTS)]
WORKERS = ["dexwatch", "dexwatch.core", "dexwatch.core.*", "beam_pipelines", "beam_pipelines.*"]

if os.environ.get("DATAFLOW_WORKER_PACKAGE") == "1":
    # A fresh egg-info: setuptools would otherwise add the files of the checkout's own
    # (everything) to the workers' cut.
    setup(
        packages=find_packages(include=WORKERS),
        options={"egg_info": {"egg_base": tempfile.mkdtemp(prefix="dexwatch-workers-")}},
    )
else:
    setup(packages=find_packages(include=EVERYTHING))
