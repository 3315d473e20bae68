-- Snapshot a table as it was at T (inside the time-travel window).
create snapshot table if not exists {target}
clone {source}
    for system_time as of @as_of
