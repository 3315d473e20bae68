-- Re-create a prod view on an environment's datasets (its SQL rewritten by envsync.bigquery.views).
create or replace view {target}
as
{query}
