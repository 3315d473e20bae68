-- Fill a table created with prod's definition from its versioned seed (ingestion-time partitioned
-- tables, which CTAS cannot create: the rows land in the current partition).
insert into {target} ({column_list})
select {column_list}
from (
{seed}
)
