"""Command line: `python -m annotator {ingest,stats,export,adduser}`.

Each command opens the store itself, so it must not run while the app holds
the same DATA_DIR (DuckDB allows one process per file; the error says so).
"""

from __future__ import annotations

import argparse
import sys

from annotator.auth import AuthError
from annotator.config import ConfigError
from annotator.store import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from annotator import auth, export, ingest, stats
    ingest.add_command(commands)
    stats.add_command(commands)
    export.add_command(commands)
    auth.add_command(commands)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ConfigError, StoreError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
