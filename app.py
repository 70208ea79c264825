"""Composition root: settings -> store -> service -> UI -> serve.

Run `python app.py`; it honours GRADIO_SERVER_NAME and GRADIO_SERVER_PORT.
One process owns DATA_DIR (annotator/datadir_lock.py), so it runs one uvicorn
worker.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from annotator.config import ConfigError
    from annotator.datadir_lock import DataDirBusyError
    from annotator.export import RestoreError
    from annotator.runtime import Runtime
    from annotator.snapshot import SnapshotError
    from annotator.store import StoreError

    try:
        runtime = Runtime.open()
    except (ConfigError, StoreError, RestoreError, SnapshotError, DataDirBusyError) as exc:
        print(f"annotator cannot start: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from annotator.ui.server import create_app

    app = create_app(runtime)
    # Everything built so far lives as long as the process: keep it out of the collector's scans, and
    # collect less often, so a crowd's clicks do not pay for long full collections.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"annotator: {runtime.task.title!r} on http://{host}:{port} (DATA_DIR={runtime.settings.data_dir})",
          flush=True)
    try:
        # httptools and uvloop (requirements.txt), named so a missing one fails here instead of costing CPU
        uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level="warning",
                    timeout_graceful_shutdown=10)
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
