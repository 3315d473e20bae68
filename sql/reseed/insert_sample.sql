-- One chunk (at most 4,000 partitions) of the deterministic, masked sample of prod as of T.
insert into {target} ({insert_columns})
select
    {select_list}
from {source}
    for system_time as of @cut
where
    {sample_predicate}
    and {keep_all}
    and {chunk}
