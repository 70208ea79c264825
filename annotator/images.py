"""Browser-ready images: decoded once, resized, cached on fast local disk.

The originals sit on DATA_DIR, which may be a slow network mount, at full
size. Annotators need display size, fast: each record's image is rendered
once into CACHE_DIR (longest side IMAGE_MAX_SIDE) by a background thread, so
the click path and the image route only ever read a small local file.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# formats every browser shows as they are: small originals are copied, not re-encoded
_BROWSER_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}
Image.MAX_IMAGE_PIXELS = 200_000_000  # refuse decompression bombs beyond ~14k x 14k


class ImageError(ValueError):
    """The image cannot be read or shown; the message names the file."""


def describe(data: bytes) -> tuple[str, int, int]:
    """Check that bytes are a complete image; return (format, width, height)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, size = img.format or "", img.size
            img.verify()
        with Image.open(io.BytesIO(data)) as img:  # verify() leaves the image unusable; decode for real
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    return fmt, size[0], size[1]


def extension_for(fmt: str) -> str:
    return _BROWSER_FORMATS.get(fmt.upper(), ".img")


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ImageCache:
    """Renders originals under `source_dir` into display-size files under `cache_dir`.

    Thread-safe; `prepare()` is idempotent and a file appears atomically, so a
    request racing a background render reads either nothing or the whole file.
    """

    def __init__(self, source_dir: Path, cache_dir: Path, max_side: int) -> None:
        self.source_dir = source_dir.resolve()
        self.cache_dir = cache_dir / f"images-{max_side}"
        self.max_side = max_side
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._locks = [threading.Lock() for _ in range(64)]

    def original(self, relative: str) -> Path:
        """The original's path; refuses any name that leaves the images folder."""
        path = (self.source_dir / relative).resolve()
        if self.source_dir not in path.parents:
            raise ImageError(f"image path {relative!r} is outside the images folder")
        return path

    def cached(self, record_id: int) -> Path | None:
        for ext in (".jpg", ".png", ".gif", ".webp"):
            path = self.cache_dir / f"{record_id}{ext}"
            if path.exists():
                return path
        return None

    def prepare(self, record_id: int, relative: str) -> Path:
        """Return the display-size file for a record, rendering it on first use."""
        found = self.cached(record_id)
        if found is not None:
            return found
        with self._locks[record_id % len(self._locks)]:
            found = self.cached(record_id)
            if found is not None:
                return found
            source = self.original(relative)
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise ImageError(f"cannot read {relative} ({exc.strerror})") from None
            ext, out = self._render(data, relative)
            path = self.cache_dir / f"{record_id}{ext}"
            write_atomic(path, out)
            return path

    def _render(self, data: bytes, name: str) -> tuple[str, bytes]:
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = (img.format or "").upper()
                small = max(img.size) <= self.max_side
                oriented = img.getexif().get(0x0112, 1) == 1
                if small and oriented and fmt in _BROWSER_FORMATS:
                    return _BROWSER_FORMATS[fmt], data
                if fmt == "JPEG":
                    img.draft("RGB", (self.max_side, self.max_side))  # decode at reduced scale: fast
                img = ImageOps.exif_transpose(img)
                img.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                if img.mode in ("RGBA", "LA", "P") and "transparency" in img.info or img.mode in ("RGBA", "LA"):
                    img.save(buf, "PNG", optimize=False)
                    return ".png", buf.getvalue()
                img.convert("RGB").save(buf, "JPEG", quality=85)
                return ".jpg", buf.getvalue()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"cannot decode {name} ({type(exc).__name__}: {exc})") from None
