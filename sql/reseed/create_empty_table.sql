-- A table with prod's definition and no rows (no seed for it).
create table {target} (
    {columns}
)
{partition_by}
{cluster_by}
