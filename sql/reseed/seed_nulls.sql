-- Nulls a seed would put into columns prod requires (REQUIRED columns, the partitioning column).
select
    {checks}
from (
{seed}
)
