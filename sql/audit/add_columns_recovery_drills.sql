-- Columns added to recovery_drills after it was first shipped (a no-op once they exist).
alter table {table}
    add column if not exists environment string
