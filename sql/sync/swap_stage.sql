-- Publish a verified staging table under its final name.
drop table if exists {target};
alter table {stage} rename to {target_name};
