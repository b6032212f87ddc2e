"""PyFarm's master: REST API, web UI, scheduler and database."""

__version__ = "0.1.0"
