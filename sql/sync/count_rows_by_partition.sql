-- Rows per partition: prod in the window as of T, and the environment's copy.
-- {keep_all} keeps every row and satisfies require_partition_filter (verify.partition_filter).
with
prod_rows as (
    select
        {bucket_prod} as partition_key,
        count(*) as row_count
    from {source}
        for system_time as of @cut
    where
        {window_filter}
        and {keep_all}
    group by partition_key
),

copy_rows as (
    select
        {bucket_copy} as partition_key,
        count(*) as row_count
    from {copy}
    where {keep_all}
    group by partition_key
)

select 'prod' as side, partition_key, row_count from prod_rows
union all
select 'copy' as side, partition_key, row_count from copy_rows
