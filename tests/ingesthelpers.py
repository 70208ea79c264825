"""What the ingest tests (test_ingest.py, test_ingest_safety.py) share: a small image's bytes and a DuckDB store.

Both modules ingest into a fresh DuckDB file per test and write images as
PNG bytes; one copy here so the two cannot drift apart.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from annotator.store import Store


def png(colour: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    """A solid-colour RGB PNG of `size`."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty DuckDB store in the test's folder, closed after the test; a module uses it by importing the name."""
    s = Store(tmp_path / "db" / "annotator.duckdb")
    yield s
    s.close()
