-- Copy the window of an unpartitioned (or re-partitioned) table as of T, keeping prod's column
-- definitions (types and modes), partitioning and clustering.
create or replace table {target} (
    {columns}
)
{partition_by}
{cluster_by}
as
select *
from {source}
    for system_time as of @cut
where
    {column} >= @window_start
    and {column} < @window_end
