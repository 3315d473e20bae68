-- The columns a seed yields, without reading its rows (contract check).
select *
from (
{seed}
)
limit 0
