"""Airflow operators of envsync: thin wrappers that call the package's plan/execute/verify code."""
