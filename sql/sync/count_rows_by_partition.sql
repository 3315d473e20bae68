-- Rows per partition: prod in the window as of T, and the environment's copy.
with
prod_rows as (
    select
        {bucket_prod} as partition_key,
        count(*) as row_count
    from {source}
        for system_time as of @cut
    where {window_filter}
    group by partition_key
),

copy_rows as (
    select
        {bucket_copy} as partition_key,
        count(*) as row_count
    from {copy}
    group by partition_key
)

select 'prod' as side, partition_key, row_count from prod_rows
union all
select 'copy' as side, partition_key, row_count from copy_rows
