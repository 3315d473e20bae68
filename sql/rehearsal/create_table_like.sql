-- An empty copy of a table's definition (schema, partitioning, clustering, options; no rows) in a
-- scratch dataset where schema migrations are rehearsed before they run.
create table {target}
like {source}
