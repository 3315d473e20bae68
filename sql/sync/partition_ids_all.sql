-- The partitions of every table of a dataset (metadata only): the plan counts the jobs it takes to
-- stay under 4,000 partitions per job.
select
    table_name,
    partition_id
from {dataset}.INFORMATION_SCHEMA.PARTITIONS
