"""envsync: derive every non-production BigQuery environment from prod, server-side."""

__version__ = "0.1.0"
