"""Which columns are masked in an environment, and the SQL of the masks (the dev sync, prod-copy and the
seeds' prod samples all mask through here)."""
