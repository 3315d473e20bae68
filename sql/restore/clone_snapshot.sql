-- Restore from a snapshot: a writable table with the snapshot's schema and data.
create or replace table {target}
clone {source}
