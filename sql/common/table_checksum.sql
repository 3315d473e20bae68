-- Row count and an order-independent checksum of a table's contents, computed in BigQuery.
-- {keep_all} keeps every row and satisfies require_partition_filter (verify.partition_filter).
select
    count(*) as row_count,
    coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as checksum
from {target} as t
where {keep_all}
