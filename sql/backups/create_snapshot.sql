-- Snapshot a table's current state (a metadata operation: storage is only billed for later changes).
create snapshot table if not exists {target}
clone {source}
