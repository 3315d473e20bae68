-- The snapshots that exist now in one backup dataset, per prod table: the UTC stamps of their names
-- (<table>__<YYYYMMDDTHHMM[SS]Z>, see envsync.backups.ladder.snapshot_name).
select
    regexp_extract(table_name, r'^(.+)__[0-9]{{8}}T[0-9]{{4}}(?:[0-9]{{2}})?Z$') as table_name,
    array_agg(regexp_extract(table_name, r'__([0-9]{{8}}T[0-9]{{4}}(?:[0-9]{{2}})?Z)$') order by table_name) as stamps
from {dataset}.INFORMATION_SCHEMA.TABLES
where regexp_contains(table_name, r'^.+__[0-9]{{8}}T[0-9]{{4}}(?:[0-9]{{2}})?Z$')
group by 1
