"""Schema migrations: the migration files and their ledger, and promotion qa -> staging -> prod."""
