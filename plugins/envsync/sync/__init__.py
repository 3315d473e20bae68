"""The dev sync (a pure planner, its run and the plan's text) and prod-copy."""
