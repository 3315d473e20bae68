-- Which audit tables exist, with their columns: the page shows a section only when its table exists.
select
    table_name,
    array_agg(column_name order by ordinal_position) as columns
from {dataset}.INFORMATION_SCHEMA.COLUMNS
where table_name in unnest(@tables)
group by table_name
