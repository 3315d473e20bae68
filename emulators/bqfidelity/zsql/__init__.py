"""GoogleSQL (ZetaSQL) for the fidelity layer: BigQuery's own SQL analyzer, offline and in-process.

PyPI ``zetasql`` ships ZetaSQL compiled to WebAssembly; ``engine`` runs it with wasmtime and caches
the compiled module, ``googlesql`` analyzes one statement against a catalog built from BigQuery table
schemas, ``types`` maps BigQuery types, ``information_schema`` declares BigQuery's INFORMATION_SCHEMA
views. ``python -m bqfidelity.zsql warm --cache DIR`` compiles the module into DIR ahead of time.
"""
