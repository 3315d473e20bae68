-- Restore by time travel: a writable copy of a table as it was at T.
create or replace table {target}
clone {source}
    for system_time as of @as_of
