-- Which schema migration version each environment is at, and what is pending where.
-- Run it in the BigQuery console or with `bq query --use_legacy_sql=false < sql/reports/migrations_per_environment.sql`
-- (replace envsync_audit if audit.dataset is set to another dataset).
--   version          the newest migration the environment holds (applied there, or synced from prod)
--   ahead_of_prod    held here, not in prod: promoted and waiting for prod; a rebuild of this
--                    environment from prod (weekly sync, reseed) applies them again
--   not_here_yet     held by another environment, not here: waiting to be promoted here (or
--                    reverted here: a QA -> staging cut replaced staging's tables with qa's, without it)
--   failed           versions whose last attempt here failed
with newest as (
    -- the newest ledger row of a version in an environment decides whether the environment holds it
    select
        environment,
        version,
        status,
        applied_at
    from envsync_audit.migrations
    where true
    qualify row_number() over (partition by environment, version order by applied_at desc) = 1
),

held as (
    select
        environment,
        version
    from newest
    where status in ('applied', 'synced')
),

environments as (
    select environment
    from unnest(['prod', 'staging', 'qa', 'dev']) as environment
    union distinct
    select environment
    from newest
),

versions as (
    select distinct version
    from held
),

grid as (
    select
        environments.environment,
        versions.version,
        here.version is not null as is_here,
        in_prod.version is not null as is_in_prod
    from environments
    cross join versions
    left join held as here
        on here.environment = environments.environment and here.version = versions.version
    left join held as in_prod
        on in_prod.environment = 'prod' and in_prod.version = versions.version
),

failures as (
    select
        environment,
        array_agg(version order by version) as failed,
        max(applied_at) as last_failure
    from newest
    where status = 'failed'
    group by environment
),

last_changes as (
    select
        environment,
        max(applied_at) as last_change
    from newest
    group by environment
)

select
    environments.environment,
    max(if(grid.is_here, grid.version, null)) as version,
    countif(grid.is_here) as versions_held,
    array_agg(if(grid.is_here and not grid.is_in_prod, grid.version, null) ignore nulls order by grid.version)
        as ahead_of_prod,
    array_agg(if(not grid.is_here, grid.version, null) ignore nulls order by grid.version) as not_here_yet,
    any_value(failures.failed) as failed,
    any_value(last_changes.last_change) as last_change
from environments
left join grid
    on grid.environment = environments.environment
left join failures
    on failures.environment = environments.environment
left join last_changes
    on last_changes.environment = environments.environment
group by environments.environment
order by
    case environments.environment when 'prod' then 0 when 'staging' then 1 when 'qa' then 2 when 'dev' then 3 else 4 end,
    environments.environment
