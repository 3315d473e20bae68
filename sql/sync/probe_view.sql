-- Prove that a view resolves, reading no rows.
select *
from {target}
limit 0
