-- Copy the window of a table as of T (or, for a masked copy without a window, the whole table),
-- keeping prod's column definitions (types and modes), partitioning and clustering. {select_list} is
-- `*`, or prod's columns with the masked ones replaced by their mask (envsync.privacy.masking).
create or replace table {target} (
    {columns}
)
{partition_by}
{cluster_by}
as
select
    {select_list}
from {source}
    for system_time as of @cut
where
    {row_filter}
