-- An empty table with prod's definition (column types, modes and collation, partitioning, clustering):
-- the window is then copied by one INSERT per chunk of at most 4,000 partitions (envsync.bigquery.partitions),
-- or the table is ingestion-time partitioned, which CTAS cannot create.
create or replace table {target} (
    {columns}
)
{partition_by}
{cluster_by}
