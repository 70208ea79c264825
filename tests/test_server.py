"""The HTTP app as `create_app` builds it: what it changes in Gradio to cost less CPU."""

from __future__ import annotations

import inspect
from pathlib import Path

from gradio.queueing import Queue
from starlette.routing import Mount

from clients import make_images, write_task

from annotator.config import load_settings
from annotator.runtime import Runtime
from annotator.ui.annotate import CLICK_ROUTE
from annotator.ui.server import QUEUE_IDLE_POLL_S, QUEUE_PROGRESS_POLL_S, create_app


def test_click_routes_first_and_gradio_queue_polling_slowed(tmp_path: Path) -> None:
    """Gradio's queue defaults (1 ms, 10 ms) cost an idle server ~55 ms of CPU a second; and Gradio must
    still read the attributes we set, or setting them does nothing."""
    make_images(tmp_path / "source", 3, size=(48, 36))
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "SOURCE_DIR": str(tmp_path / "source"),
                              "TASK_FILE": str(write_task(tmp_path / "task.toml")), "AUTH_MODE": "local"})
    runtime = Runtime.open(settings)
    try:
        app = create_app(runtime)
        gradio_app = next(r.app for r in app.routes if isinstance(r, Mount))
        queue = gradio_app.get_blocks()._queue
        # the click routes come first, so a click is not matched against every Gradio route before them
        assert [r.path for r in gradio_app.router.routes[:5]] == [f"{CLICK_ROUTE}/{name}" for name in
                                                                  ("answer", "skip", "back", "next", "saved")]
        assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (QUEUE_IDLE_POLL_S,
                                                                                  QUEUE_PROGRESS_POLL_S)
    finally:
        runtime.close()
    assert "self.sleep_when_free" in inspect.getsource(Queue.start_processing)
    assert "self.progress_update_sleep_when_free" in inspect.getsource(Queue.start_progress_updates)
