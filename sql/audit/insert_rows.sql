-- Append rows to an audit table; every value is a query parameter.
insert into {table} ({columns})
values
{rows}
