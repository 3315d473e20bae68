-- Every row of the migrations ledger, oldest first (the ledger holds a few rows per version and
-- environment; the newest row of a version decides).
select
    applied_at,
    environment,
    version,
    name,
    phase,
    checksum,
    dag_id,
    run_id,
    status,
    error
from {table}
order by applied_at, version
