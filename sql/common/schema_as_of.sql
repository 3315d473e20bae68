-- Prod's columns as of T: only dry-run, for the result schema (nothing is read or billed).
-- {keep_all} keeps every row and satisfies require_partition_filter (verify.partition_filter).
select *
from {source}
    for system_time as of @cut
where {keep_all}
