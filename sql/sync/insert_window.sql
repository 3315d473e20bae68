-- One chunk (at most 4,000 partitions) of the window of a prod table as of T; ingestion-time tables
-- carry prod's _PARTITIONTIME.
insert into {target} ({insert_columns})
select {select_columns}
from {source}
    for system_time as of @cut
where
    {column} >= @window_start
    and {column} < @window_end
    and {chunk}
