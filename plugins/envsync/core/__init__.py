"""Foundations used by everything, importing nothing above them: the config, the identifier rules (a leaf),
the prod write guard, the client factory, the SQL templates, windows and cuts, the run manifests and the
backup ladder's rungs."""
