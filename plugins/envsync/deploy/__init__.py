"""Ship envsync as one artifact, built once and promoted staging -> prod (`python -m envsync.deploy`).

    bundle    envsync-<version>.tar.gz from the git-tracked files of a clean tree: reproducible (same
              inputs, same bytes), laid out for Cloud Composer's bucket, with MANIFEST.json (every
              file's sha256, the lock file's, and the bundle's digest over the sorted (path, sha256) list)
    deploy    every file under gs://<bucket>/data/envsync/releases/<version>-<digest12>/ first, then ONE
              generation-checked write of data/envsync/CURRENT.json switches the environment to it;
              prod only takes a digest staging's ledger records as deployed and smoke-passed, with the
              confirmation phrase `deploy envsync <version> to prod`
    smoke     through the target Airflow's REST API v2: no import errors, every DAG of the release
              present (serving this digest) with its params, a dry run of prod_to_dev_sync succeeds
    rollback  CURRENT.json back to the environment's previous good release, in one write

Every deploy, smoke and rollback is recorded in data/envsync/deploys.json (the ledger) and announced on
Slack through the notifier envsync's alerts use. Modules: bundle (build, read, verify), loader (the
stable DAG file of the live dags/ folder), release (the bucket: releases, CURRENT, ledger, promotion,
rollback), smoke (the REST checks), notify (Slack), __main__ (the CLI).
"""
