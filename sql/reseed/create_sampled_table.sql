-- A table with prod's definition, filled with a deterministic, masked sample of prod as of T.
create table {target} (
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
    {sample_predicate}
    and {keep_all}
