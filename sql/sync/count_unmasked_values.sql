-- Per masked column: rows of the copy whose masked value equals prod's value for the same row as of T
-- (0 when every value is masked). Rows are matched on {match_key}: the configured key columns, or a
-- hash of the unmasked columns. {keep_all} keeps every row and satisfies require_partition_filter.
with
prod_rows as (
    select
        {match_key} as match_key,
        {masked_columns}
    from {source}
        for system_time as of @cut
    where
        {row_filter}
),

copy_rows as (
    select
        {match_key} as match_key,
        {masked_columns}
    from {copy}
    where {keep_all}
)

select
    {counts}
from copy_rows
inner join prod_rows
    on copy_rows.match_key = prod_rows.match_key
