-- One point per recovery drill run since @since: its worst RTO and RPO over the tables it restored,
-- and which tables failed.
select
    dag_id,
    run_id,
    min(point_in_time) as point_in_time,
    max(recorded_at) as recorded_at,
    count(*) as tables,
    countif(status != 'ok') as failed_tables,
    max(rto_seconds) as rto_seconds,
    max(rpo_seconds) as rpo_seconds,
    string_agg(if(status != 'ok', concat(dataset, '.', table_name), null), ', ' limit 5) as failed_names
from {drills}
where recorded_at >= @since
group by dag_id, run_id
order by recorded_at
