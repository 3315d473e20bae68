-- One chunk (at most 4,000 partitions) of the window of a prod table as of T (or of the whole table,
-- for a masked copy without a window); ingestion-time tables carry prod's _PARTITIONTIME.
insert into {target} ({insert_columns})
select {select_columns}
from {source}
    for system_time as of @cut
where
    {row_filter}
    and {chunk}
