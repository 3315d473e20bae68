-- One chunk (at most 4,000 partitions) of a loaded export into the restore's stage table.
insert into {target} ({columns})
select {columns}
from {source}
where {chunk}
