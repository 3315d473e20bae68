-- Row count and an order-independent checksum of a table's contents, computed in BigQuery.
select
    count(*) as row_count,
    coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as checksum
from {target} as t
