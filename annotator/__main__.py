"""Command line: `python -m annotator {ingest,stats,export,adduser,migrate}`.

Each command opens the store itself (`engine.open_store`): on DuckDB it must not
run while the app holds the same DATA_DIR (one process per file; the error says
so); on PostgreSQL (STORE_URL) it may run beside the replicas.
"""

from __future__ import annotations

import argparse
import sys

from annotator.auth import AuthError
from annotator.config import ConfigError
from annotator.model import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from annotator import auth, engine, export, ingest, stats
    ingest.add_command(commands)
    stats.add_command(commands)
    export.add_command(commands)
    auth.add_command(commands)
    engine.add_command(commands)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ConfigError, StoreError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
