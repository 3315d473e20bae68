"""What envsync records and tells: the audit tables, alerts, and run reports."""
