"""``python -m bqfidelity.zsql warm [--cache DIR]``: compile ZetaSQL's WebAssembly module into the
cache (about 25 s and 1 GB, once), or check that the cached one loads; prints the timings."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bqfidelity.zsql", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["warm"])
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default: BQFIDELITY_CACHE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    from bqfidelity.analyzer import cache_dir
    from bqfidelity.zsql.googlesql import GoogleSQL

    cache = args.cache or cache_dir()
    analyzer = GoogleSQL(cache)
    engine = analyzer.engine
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"ZetaSQL module {engine.loaded_from} in {engine.load_seconds:.1f} s, analyzer ready in "
        f"{analyzer.start_seconds:.1f} s, peak memory {peak:.0f} MB; cache {cache}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
