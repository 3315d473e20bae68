-- Row count and order-independent checksum of a table as it was at T (time travel), computed in BigQuery.
-- {keep_all} keeps every row and satisfies require_partition_filter (verify.partition_filter).
select
    count(*) as row_count,
    coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as checksum
from {source} as t
    for system_time as of @as_of
where {keep_all}
