-- Every QA -> staging cut, newest first: its T, what it carried over from qa and how it ended.
-- Run it in the BigQuery console or with `bq query --use_legacy_sql=false < sql/reports/staging_cuts.sql`
-- (replace envsync_audit if audit.dataset is set to another dataset).
--   t                  the instant qa was copied as of
--   seed_version       the seed qa was re-seeded with (label envsync-seed-version), now staging's
--   migration_version  the newest schema migration qa held as of T; a successful cut records it for
--                      staging in envsync_audit.migrations (rows of dag_id staging_cut and this run_id:
--                      status synced for what qa held, reverted for what staging held and qa did not)
--   is_latest_success  the newest successful cut: what staging holds, unless reseeded or restored since
select
    recorded_at,
    run_id,
    cut as t,
    timestamp_diff(recorded_at, cut, second) as seconds_after_t,
    source,
    seed_version,
    migration_version,
    status,
    status = 'success'
    and row_number() over (partition by status = 'success' order by recorded_at desc) = 1 as is_latest_success,
    datasets,
    pinned_backups,
    error
from envsync_audit.staging_cuts
order by recorded_at desc
