"""Backups: the ladder planner, snapshots and exports, restores and recovery drills."""
