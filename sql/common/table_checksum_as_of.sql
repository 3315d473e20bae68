-- Row count and order-independent checksum of a table as it was at T (time travel), computed in BigQuery.
select
    count(*) as row_count,
    coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as checksum
from {source} as t
    for system_time as of @as_of
