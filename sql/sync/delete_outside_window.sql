-- Drop the rows (whole partitions, when the table is partitioned on this column) outside the window.
delete from {target}
where
    {column} is null
    or {column} < @window_start
    or {column} >= @window_end
