"""Dataflow ships local code to its workers with ``--setup_file ./setup.py``; the package
metadata itself lives in pyproject.toml."""

from setuptools import setup

setup()
