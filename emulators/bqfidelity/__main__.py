"""``python -m bqfidelity serve --host ... --port ...``: local-bigquery with the fidelity layer applied."""

from __future__ import annotations

import logging
import sys

import bqfidelity


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    applied = bqfidelity.install()
    logging.getLogger("bqfidelity").info("fidelity layer applied: %s", ", ".join(applied) or "none")
    from local_bigquery import cli

    cli.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
