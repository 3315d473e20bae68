"""BigQuery primitives on top of envsync.core: jobs, datasets, DDL, discovery, partitions, views, time
travel, verification, and the per-object action record they share."""
