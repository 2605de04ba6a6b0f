"""The dashboard: a local web page over the warehouse, read while the pipeline writes
(`dexwatch dashboard`; `dexwatch run` starts it). Pages: the pools at a glance, the alert
threads live, one pool over time, the models' health. See app.py for the routes."""

from dexwatch.app.dashboard.server import DEFAULT_PORT, DashboardServer, start_dashboard

__all__ = ["DEFAULT_PORT", "DashboardServer", "start_dashboard"]
