-- The partitions a table has (metadata only), to split DML into jobs of at most 4,000 partitions.
select partition_id
from {dataset}.INFORMATION_SCHEMA.PARTITIONS
where table_name = @table_name
