-- The partitions the rows of a loaded export fall in (to copy it in jobs of at most 4,000 partitions).
select distinct {partition_id} as partition_id
from {source}
