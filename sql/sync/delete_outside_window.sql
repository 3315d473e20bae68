-- Drop the rows (whole partitions, when the table is partitioned on this column) outside the window;
-- {chunk} limits one DELETE to at most 4,000 partitions (envsync.bigquery.partitions), `true` when one suffices.
delete from {target}
where
    (
        {column} is null
        or {column} < @window_start
        or {column} >= @window_end
    )
    and {chunk}
