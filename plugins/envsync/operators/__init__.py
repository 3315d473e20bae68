"""Airflow glue: the operators (thin wrappers that call a capability), the DAGs' defaults and the trigger
form's params."""
