-- Zero-copy clone of a prod table as it was at the run's cut T.
create or replace table {target}
clone {source}
    for system_time as of @cut
