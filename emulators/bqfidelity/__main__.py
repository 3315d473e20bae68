"""``python -m bqfidelity serve --host ... --port ... [--latency-file PATH]``: local-bigquery with the
fidelity layer applied.

Every argument but ``--latency-file`` goes to ``local-bigquery``; ``--latency-file PATH`` (or
``--latency-file=PATH``) sets ``BQFIDELITY_LATENCY_FILE`` for the ``latency`` module: the file's number of
seconds holds every job RUNNING that long before it runs.
"""

from __future__ import annotations

import logging
import os
import sys

import bqfidelity

LATENCY_FLAG = "--latency-file"


def _take_latency_file(argv: list[str]) -> list[str]:
    """argv without ``--latency-file PATH``, whose PATH goes to BQFIDELITY_LATENCY_FILE."""
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == LATENCY_FLAG:
            value = next(args, None)
            if value is None:
                raise SystemExit(f"{LATENCY_FLAG} needs a path")
        elif arg.startswith(LATENCY_FLAG + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
            continue
        os.environ["BQFIDELITY_LATENCY_FILE"] = value
    return rest


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = _take_latency_file(list(argv if argv is not None else sys.argv[1:]))
    applied = bqfidelity.install()
    logging.getLogger("bqfidelity").info("fidelity layer applied: %s", ", ".join(applied) or "none")
    from local_bigquery import cli

    cli.main(args)


if __name__ == "__main__":
    main()
