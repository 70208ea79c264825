"""Browser-ready images: decoded once, resized, cached on fast local disk.

The originals sit on DATA_DIR, which may be a slow network mount, at full
size. Annotators need display size, fast: each image is rendered once into
CACHE_DIR (longest side IMAGE_MAX_SIDE) by a background thread, so the click
path and the image route only ever read a small local file.

A rendition is named by the SHA-256 of the original's bytes (stored with the
record at ingest) and by the rendering parameters, never by a record number:
record numbers restart at 1 in every DATA_DIR, while CACHE_DIR may be shared
by every app on the host and outlives a deleted data folder.

What is shown is what the file means: every mode Pillow reads (16-bit and
32-bit grayscale, float, palette with transparency, CMYK, Lab, alpha, EXIF
orientation) becomes 8-bit L, LA, RGB or RGBA the way an image viewer shows
it, and an image above MAX_IMAGE_PIXELS is refused from its header, before
any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import re
import threading
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from annotator.files import write_atomic
from annotator.config import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_CEILING

# Pillow's own guard warns above its limit and refuses above twice it, with a message nobody can act on;
# `open_image` checks MAX_IMAGE_PIXELS from the header first, so Pillow's stays out of its way.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS_CEILING

JPEG_QUALITY = 85
# The zoomed view's rendition: this many times the display size on its longest side, never more than the
# original (a smaller original is its own large rendition). Asked for only when someone zooms.
ZOOM_FACTOR = 2
# Large renditions rendered at once: each decodes an original of up to MAX_IMAGE_PIXELS (hundreds of MB
# and up to a second of CPU), on request, so a crowd zooming at once queues here instead of filling memory.
LARGE_RENDERS_AT_ONCE = 2
# Display renditions kept in memory, the most recently made or sent: a record is rendered by the refill
# just before it is handed out and then fetched by each of its overlap's people, so the image route sends
# it from memory, with no file system call (about 500 to 1,000 images at display size)
RECENT_BYTES = 64 * 2**20
RECENT_LARGEST = 2 * 2**20  # a larger rendition (a huge PNG) is sent from disk instead of emptying the memory
RENDERER_VERSION = 2  # bump when the same original and settings would render differently: old files go unused

# formats every browser shows as they are: small originals are copied, not re-encoded. MPO is a JPEG with
# further pictures after it (many phones and cameras write it for a plain photo): a JPEG to every browser
_BROWSER_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}
_RENDITION_SUFFIXES = (".jpg", ".png", ".gif", ".webp")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# modes with more than 8 bits per sample: scaled to 8-bit grayscale (see _high_bit_to_l)
_HIGH_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Rendition:
    """A rendered file as the image route sends it."""
    path: Path
    data: bytes
    media_type: str


class ImageError(ValueError):
    """The image cannot be read or shown; the message is for a person ("truncated", "too large: ...")."""


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return (f"too large: {width}x{height} pixels, the limit is {max_pixels / 1e6:g} megapixels "
            f"(MAX_IMAGE_PIXELS)")


def _starts_like_an_image(data: bytes) -> bool:
    """Whether some image format Pillow reads claims these first bytes (as `Image.open` asks each one)."""
    Image.init()
    for _, accept in Image.OPEN.values():
        try:
            if accept is not None and accept(data[:16]):
                return True
        except Exception:  # noqa: BLE001 - a plugin's check that cannot read so few bytes: not its format
            continue
    return False


def _reason(exc: BaseException, max_pixels: int, data: bytes) -> str:
    """Why Pillow could not decode an image, in words for the organizer who has to replace the file."""
    if isinstance(exc, UnidentifiedImageError):  # also a header cut short: Pillow then knows no format
        return "truncated or damaged" if _starts_like_an_image(data) else "not an image"
    if isinstance(exc, Image.DecompressionBombError):
        return (f"too large: over {2 * MAX_IMAGE_PIXELS_CEILING / 1e6:g} megapixels, the limit is "
                f"{max_pixels / 1e6:g} megapixels (MAX_IMAGE_PIXELS)")
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return "truncated"
    return "damaged: its image data cannot be decoded"


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open image bytes lazily (header only), refusing more than `max_pixels` before any decoding."""
    if not data:
        raise ImageError("empty file")
    try:
        img = Image.open(io.BytesIO(data))
    except _DECODE_ERRORS as exc:
        raise ImageError(_reason(exc, max_pixels, data)) from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageError(_too_large(width, height, max_pixels))
    return img


# EXIF orientations that turn the picture a quarter (5-8): shown, its width is the stored height
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _orientation(img: Image.Image, data: bytes) -> int:
    """The EXIF orientation (1: as stored). Pillow decodes a whole PNG to look for an eXIf chunk after the
    pixels; a walk over the chunk headers (`_png_has_exif`) tells first whether there is one at all."""
    if img.format == "PNG" and "exif" not in img.info and not _png_has_exif(data):
        return 1
    return img.getexif().get(0x0112, 1)


def _png_has_exif(data: bytes) -> bool:
    at = 8  # after the signature: chunks of length (4 bytes), type (4), data, CRC (4)
    while at + 8 <= len(data):
        kind = data[at + 4:at + 8]
        if kind == b"eXIf":
            return True
        if kind == b"IEND":
            return False
        at += 12 + int.from_bytes(data[at:at + 4], "big")
    return False


def _shown_size(img: Image.Image) -> tuple[int, int]:
    """The size of an opened image as a viewer shows it: sides swapped when its EXIF orientation turns it."""
    width, height = img.size
    try:
        turned = img.getexif().get(0x0112, 1) in _QUARTER_TURNS
    except Exception:  # noqa: BLE001 - EXIF a decoder cannot read: the picture is shown unturned (_render)
        turned = False
    return (height, width) if turned else (width, height)


def shown_size(path: Path) -> tuple[int, int]:
    """A stored original's size as shown (as `describe` gives it), read from its header only (a few KB, no
    decoding). Raises ImageError when it cannot be read."""
    try:
        with Image.open(path) as img:
            return _shown_size(img)
    except FileNotFoundError:
        raise ImageError(f"{path.name} is missing") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path.name}: {exc}") from None


def describe(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[str, int, int]:
    """Check that bytes are a complete image within `max_pixels`; return (format, width, height), the size
    as shown (after the EXIF orientation: what the page draws, the export states and a box is measured on)."""
    with open_image(data, max_pixels) as img:
        fmt = img.format or ""
        try:
            img.verify()
        except _DECODE_ERRORS as exc:
            raise ImageError(_reason(exc, max_pixels, data)) from None
    with open_image(data, max_pixels) as img:  # verify() leaves the image unusable; decode for real
        try:
            img.load()
        except _DECODE_ERRORS as exc:
            raise ImageError(_reason(exc, max_pixels, data)) from None
        size = _shown_size(img)
    return fmt, size[0], size[1]


def extension_for(fmt: str) -> str:
    return _BROWSER_FORMATS.get(fmt.upper(), ".img")


# --- the originals, as ingest and restore store them ---------------------------

class SavedImage(NamedTuple):
    """Where `save_original` put an image (relative to the images folder), and what it is."""
    path: str
    sha256: str
    width: int
    height: int


def _original_extension(fmt: str) -> str:
    ext = extension_for(fmt)
    if ext != ".img":
        return ext
    for suffix, name in Image.registered_extensions().items():  # formats browsers do not show (TIFF, BMP...)
        if name == fmt.upper():                                  # keep a real suffix anyway
            return suffix
    return ext


def save_original(data: bytes, images_dir: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SavedImage:
    """Check image bytes and store them as they are, at `<sha256[:2]>/<sha256><ext>` under `images_dir`.

    Content-addressed, so a duplicate is stored once, and written atomically,
    so a half-written file never carries a final name. Raises ImageError when
    the bytes are not a complete, readable image of at most `max_pixels`.
    """
    fmt, width, height = describe(data, max_pixels)
    sha = hashlib.sha256(data).hexdigest()
    relative = f"{sha[:2]}/{sha}{_original_extension(fmt)}"
    target = images_dir / relative
    try:
        present = target.stat().st_size == len(data)
    except OSError:
        present = False
    if not present:
        write_atomic(target, data)
    return SavedImage(relative, sha, width, height)


# --- what a viewer shows ------------------------------------------------------

def _high_bit_to_l(img: Image.Image, max_side: int) -> Image.Image:
    """16-bit, 32-bit and float grayscale as 8-bit, linearly over the range the values are meant in.

    16-bit data spans 0..65535 (a viewer shows 65535 as white, not everything
    above 255 as white). A 32-bit integer image whose values fit 0..255 or
    0..65535 is read as that depth; a float image as 0..1 or 0..255 when its
    values fit; anything else is stretched from its minimum to its maximum.
    """
    values = np.asarray(img, dtype=np.float32)
    finite = values[np.isfinite(values)] if img.mode == "F" else values  # NaN and infinity only in floats
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    elif img.mode == "I" and lo >= 0 and hi <= 65535:
        lo, hi = 0.0, 65535.0
    values = np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo)
    small = Image.fromarray(values)  # float32: mode F
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    scaled = (np.asarray(small) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    return Image.fromarray(np.rint(np.clip(scaled, 0, 255)).astype(np.uint8))  # uint8: mode L


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """CMYK through the file's own colour profile when it has one, as viewers convert it."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            return ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                             ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: Pillow's plain conversion below
    return img.convert("RGB")


def _displayable(img: Image.Image, max_side: int) -> tuple[Image.Image, bytes | None]:
    """An already oriented image as 8-bit L, LA, RGB or RGBA within `max_side`, and the colour profile to keep.

    The profile is kept where the pixels are still in the file's colour space
    (an RGB photo in Display P3 stays in it, and the browser applies it).
    """
    mode = img.mode
    icc = img.info.get("icc_profile")
    if mode in _HIGH_BIT:
        return _high_bit_to_l(img, max_side), None
    if mode == "CMYK":
        img, icc = _cmyk_to_rgb(img), None
    elif mode in ("P", "PA"):
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode == "1":
        img, icc = img.convert("L"), None
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img, icc = img.convert("RGBA" if "A" in mode else "RGB"), None
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema() == (255, 255):
        img = img.convert(img.mode[:-1])  # alpha that hides nothing: a smaller JPEG, not a PNG
    return img, icc


class ImageCache:
    """Renders originals under `source_dir` into display-size files under `cache_dir`.

    A rendition's name is the original's SHA-256 under a folder named by the
    rendering parameters, so apps with different data sharing one CACHE_DIR,
    or a data folder deleted and filled again, never see each other's images.
    Thread-safe; `prepare()` is idempotent and a file appears atomically, so a
    request racing a background render reads either nothing or the whole file.
    """

    def __init__(self, source_dir: Path, cache_dir: Path, max_side: int,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, *, zoom_factor: int = ZOOM_FACTOR,
                 renders_at_once: int | None = None, keep_bytes: int = RECENT_BYTES) -> None:
        self.source_dir = source_dir.resolve()
        self.cache_dir = cache_dir / "renditions" / f"{max_side}px-q{JPEG_QUALITY}-v{RENDERER_VERSION}"
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._locks = [threading.Lock() for _ in range(64)]
        self._renders = threading.BoundedSemaphore(renders_at_once) if renders_at_once else nullcontext()
        self._keep_bytes = keep_bytes
        self._recent: OrderedDict[str, Rendition] = OrderedDict()  # by content hash, see RECENT_BYTES
        self._recent_size = 0
        self._recent_lock = threading.Lock()
        # the rendition a zoomed view loads: the same rules and cache, `zoom_factor` times the side, rendered
        # on demand only, a few at a time; the large cache's own `large` is itself
        self.large: ImageCache = (self if zoom_factor <= 1 else
                                  ImageCache(source_dir, cache_dir, max_side * zoom_factor, max_pixels, zoom_factor=1,
                                             renders_at_once=LARGE_RENDERS_AT_ONCE, keep_bytes=0))

    def original(self, relative: str) -> Path:
        """The original's path; refuses any name that leaves the images folder."""
        path = (self.source_dir / relative).resolve()
        if self.source_dir not in path.parents:
            raise ImageError(f"image path {relative!r} is outside the images folder")
        return path

    def cached(self, sha256: str) -> Path | None:
        """The rendition of the original with this content hash, if it was rendered (a few stat calls)."""
        if not _SHA256.fullmatch(sha256):
            return None
        for ext in _RENDITION_SUFFIXES:
            path = self.cache_dir / sha256[:2] / f"{sha256}{ext}"
            if path.exists():
                return path
        return None

    def prepare(self, sha256: str, relative: str) -> Path:
        """Return the display-size file of the original `relative`, whose content hash is `sha256`.

        Renders it on first use. Raises ImageError when the original cannot be
        read or shown, or when its bytes do not have the hash the record was
        stored with (then no rendition is made: it would show another image).
        """
        kept = self._recent.get(sha256)
        if kept is not None:
            return kept.path
        found = self.cached(sha256)
        if found is not None:
            return found
        if not _SHA256.fullmatch(sha256):
            raise ImageError(f"the record of {relative} has no content hash; ingest it again")
        with self._locks[int(sha256[:4], 16) % len(self._locks)]:
            found = self.cached(sha256)
            if found is not None:
                return found
            source = self.original(relative)
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise ImageError(f"cannot read {relative} ({exc.strerror})") from None
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ImageError(f"{relative} has changed since it was ingested; ingest it again")
            with self._renders:
                ext, out = self._render(data, relative)
            path = self.cache_dir / sha256[:2] / f"{sha256}{ext}"
            write_atomic(path, out)
            self._keep(sha256, path, out)
            return path

    def rendition(self, sha256: str) -> Rendition | None:
        """The rendered file of this content hash, from memory or from disk; None if it is not rendered."""
        with self._recent_lock:
            kept = self._recent.get(sha256)
            if kept is not None:
                self._recent.move_to_end(sha256)
                return kept
        path = self.cached(sha256)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # the cache folder was cleared under us: rendered again when asked
            return None
        return self._keep(sha256, path, data)

    def _keep(self, sha256: str, path: Path, data: bytes) -> Rendition:
        found = Rendition(path, data, mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        if len(data) > min(self._keep_bytes, RECENT_LARGEST):
            return found
        with self._recent_lock:
            old = self._recent.pop(sha256, None)
            self._recent_size += len(data) - (len(old.data) if old is not None else 0)
            self._recent[sha256] = found
            while self._recent_size > self._keep_bytes:
                self._recent_size -= len(self._recent.popitem(last=False)[1].data)
        return found

    def _render(self, data: bytes, name: str) -> tuple[str, bytes]:
        try:
            with open_image(data, self.max_pixels) as img:
                fmt = (img.format or "").upper()
                small = max(img.size) <= self.max_side
                oriented = _orientation(img, data) == 1
                if small and oriented and fmt in _BROWSER_FORMATS and img.mode != "CMYK":
                    return _BROWSER_FORMATS[fmt], data
                if fmt in ("JPEG", "MPO"):
                    img.draft("RGB", (self.max_side, self.max_side))  # decode at reduced scale: fast
                shown, icc = _displayable(ImageOps.exif_transpose(img), self.max_side)
                buf = io.BytesIO()
                if shown.mode in ("RGBA", "LA"):
                    shown.save(buf, "PNG", optimize=False, icc_profile=icc)
                    return ".png", buf.getvalue()
                shown.save(buf, "JPEG", quality=JPEG_QUALITY, icc_profile=icc)
                return ".jpg", buf.getvalue()
        except ImageError as exc:
            raise ImageError(f"{name}: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{name}: {_reason(exc, self.max_pixels, data)}") from None
