-- A table with prod's definition, filled from its versioned seed.
create table {target} (
    {columns}
)
{partition_by}
{cluster_by}
as
select {column_list}
from (
{seed}
)
