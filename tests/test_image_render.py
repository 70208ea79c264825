"""What is shown is the image (issue 11.6): every mode and bit depth Pillow reads is rendered as it looks.

Each case is generated with Pillow and numpy, rendered by the app's ImageCache
(the path the image route and the prefetch take), decoded again, and its
pixels compared with what an image viewer shows for that file. Images are made
larger than the display size, so each one is really rendered, not copied.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from annotator.images import ImageCache, ImageError

SIDE = 64            # the cache's IMAGE_MAX_SIDE
W, H = 160, 96       # the originals: larger, so they are rendered
TOLERANCE = 6        # JPEG at quality 85 on flat bands


def save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def bands(values: list[object], dtype: str) -> np.ndarray:
    """Vertical bands of equal width, one per value, H x W."""
    out = np.zeros((H, W), dtype=dtype)
    for i, v in enumerate(values):
        out[:, i * W // len(values):(i + 1) * W // len(values)] = v
    return out


def render(tmp_path: Path, data: bytes, **cache_args: int) -> Image.Image:
    originals = tmp_path / "originals"
    originals.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(data).hexdigest()
    (originals / sha).write_bytes(data)
    cache = ImageCache(originals, tmp_path / "cache", SIDE, **cache_args)
    path = cache.prepare(sha, sha)
    shown = Image.open(path)
    shown.load()
    assert shown.format in ("JPEG", "PNG", "GIF", "WEBP")
    return shown


def band_means(img: Image.Image, n: int, mode: str = "L") -> list[tuple[float, ...]]:
    """The mean of each vertical band's middle, in `mode`."""
    pixels = np.asarray(img.convert(mode), dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    w = img.width
    return [tuple(pixels[:, i * w // n + 2:(i + 1) * w // n - 2].mean(axis=(0, 1)))
            for i in range(n)]


def close(actual: list[tuple[float, ...]], expected: list[tuple[float, ...]]) -> bool:
    return all(abs(a - e) <= TOLERANCE for got, want in zip(actual, expected) for a, e in zip(got, want))


GREYS = [(0.0,), (64.0,), (128.0,), (255.0,)]

GRAYSCALE_CASES: dict[str, Callable[[], bytes]] = {
    # 16-bit: 0, 1/4, 1/2 and all of 65535 (shown almost white when clipped at 255)
    "16-bit TIFF": lambda: save(Image.fromarray(bands([0, 16448, 32896, 65535], "uint16")), "TIFF"),
    "16-bit big-endian TIFF": lambda: save(Image.fromarray(bands([0, 16448, 32896, 65535], ">u2")), "TIFF"),
    "16-bit PNG": lambda: save(Image.fromarray(bands([0, 16448, 32896, 65535], "uint16")), "PNG"),
    # 32-bit integers holding 16-bit data, and holding a range of their own (stretched)
    "32-bit I TIFF, 16-bit values": lambda: save(Image.fromarray(bands([0, 16448, 32896, 65535], "int32")),
                                                 "TIFF"),
    "32-bit I TIFF, wide range": lambda: save(Image.fromarray(bands([-100000, 0, 100000, 300000], "int32")),
                                              "TIFF"),
    # float: 0..1 as black to white
    "float TIFF 0..1": lambda: save(Image.fromarray(bands([0.0, 0.251, 0.502, 1.0], "float32")), "TIFF"),
    "1-bit PNG": lambda: save(Image.fromarray(bands([0, 0, 255, 255], "uint8")).convert("1"), "PNG"),
}
EXPECTED_GREYS = {**{name: GREYS for name in GRAYSCALE_CASES},
                  "32-bit I TIFF, wide range": [(0.0,), (63.75,), (127.5,), (255.0,)],
                  "1-bit PNG": [(0.0,), (0.0,), (255.0,), (255.0,)]}


@pytest.mark.parametrize("case", list(GRAYSCALE_CASES))
def test_grayscale_of_every_depth_is_shown_over_its_range(tmp_path: Path, case: str) -> None:
    shown = render(tmp_path, GRAYSCALE_CASES[case]())
    assert max(shown.size) == SIDE
    got = band_means(shown, 4)
    assert close(got, EXPECTED_GREYS[case]), f"{case}: bands {got}, expected {EXPECTED_GREYS[case]}"


def test_float_image_with_nan_and_infinity_is_shown(tmp_path: Path) -> None:
    shown = render(tmp_path, save(Image.fromarray(bands([np.nan, 0.5, np.inf, 1.0], "float32")), "TIFF"))
    assert close(band_means(shown, 4), [(0.0,), (128.0,), (255.0,), (255.0,)])


def test_palette_with_transparency_keeps_it(tmp_path: Path) -> None:
    img = Image.fromarray(bands([0, 1, 2, 1], "uint8"), "P")
    img.putpalette([255, 0, 0, 0, 128, 255, 0, 200, 0] + [0] * (253 * 3))
    shown = render(tmp_path, save(img, "PNG", transparency=2))  # index 2 (green) is transparent
    assert shown.format == "PNG"
    got = band_means(shown, 4, "RGBA")
    assert close([got[0], got[1], got[3]], [(255, 0, 0, 255), (0, 128, 255, 255), (0, 128, 255, 255)]), got
    assert got[2][3] <= TOLERANCE, f"the transparent band is shown opaque: {got[2]}"


def test_cmyk_jpeg_is_shown_in_its_colours(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (W, H))
    for i, ink in enumerate([(0, 255, 255, 0), (255, 0, 255, 0), (0, 0, 0, 0), (0, 0, 0, 255)]):
        cmyk.paste(ink, (i * W // 4, 0, (i + 1) * W // 4, H))
    shown = render(tmp_path, save(cmyk, "JPEG", quality=95))
    assert shown.mode == "RGB"
    got = band_means(shown, 4, "RGB")
    assert close(got, [(255, 0, 0), (0, 255, 0), (255, 255, 255), (0, 0, 0)]), got


def test_small_cmyk_jpeg_is_converted_not_copied(tmp_path: Path) -> None:
    data = save(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG", quality=95)
    shown = render(tmp_path, data)
    assert shown.mode == "RGB"
    assert close(band_means(shown, 1, "RGB"), [(255, 0, 0)])


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_kept_where_it_hides_something_and_dropped_where_not(tmp_path: Path, mode: str) -> None:
    grey = bands([40, 40, 200, 200], "uint8")
    alpha = bands([255, 0, 255, 0], "uint8")
    channels = [grey, alpha] if mode == "LA" else [grey, grey, grey, alpha]
    img = Image.fromarray(np.dstack(channels), mode)
    shown = render(tmp_path, save(img, "PNG"))
    assert shown.format == "PNG" and shown.mode == mode
    got = band_means(shown, 4, "LA")
    assert close([got[0], got[2]], [(40, 255), (200, 255)]) and got[1][1] <= TOLERANCE and got[3][1] <= TOLERANCE

    opaque = Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), "RGBA")
    shown = render(tmp_path / "opaque", save(opaque, "PNG"))
    assert shown.format == "JPEG" and shown.mode == "RGB"  # an alpha that hides nothing costs a PNG for nothing


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (W, H), (255, 0, 0))
    img.paste((0, 0, 255), (W // 2, 0, W, H))  # left red, right blue as stored
    exif = img.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: red on top, blue below
    shown = render(tmp_path, save(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert shown.height > shown.width
    rgb = shown.convert("RGB")
    top, bottom = rgb.getpixel((shown.width // 2, 5)), rgb.getpixel((shown.width // 2, shown.height - 5))
    assert close([top, bottom], [(255, 0, 0), (0, 0, 255)]), (top, bottom)


def test_lab_tiff_is_shown_in_its_colours(tmp_path: Path) -> None:
    lab = Image.new("LAB", (W, H), (128, 128, 128))  # L* 50, neutral: sRGB grey 119
    shown = render(tmp_path, save(lab, "TIFF"))
    assert close(band_means(shown, 1, "RGB"), [(119, 119, 119)])


def test_small_browser_images_are_served_byte_for_byte(tmp_path: Path) -> None:
    """A 16-bit PNG or a palette PNG the browser shows itself: copied, never re-encoded."""
    for i, img in enumerate((Image.fromarray(np.full((20, 30), 40000, "uint16")),
                             Image.new("P", (30, 20), 3))):
        data = save(img, "PNG")
        originals = tmp_path / f"o{i}"
        originals.mkdir()
        sha = hashlib.sha256(data).hexdigest()
        (originals / "x.png").write_bytes(data)
        assert ImageCache(originals, tmp_path / "cache", SIDE).prepare(sha, "x.png").read_bytes() == data


def test_the_renderer_refuses_images_above_the_pixel_limit_before_decoding(tmp_path: Path) -> None:
    data = save(Image.new("L", (2000, 1500)), "PNG")
    with pytest.raises(ImageError, match=r"too large: 2000x1500 pixels, the limit is 1 megapixels "
                                         r"\(MAX_IMAGE_PIXELS\)"):
        render(tmp_path, data, max_pixels=1_000_000)
    assert render(tmp_path / "ok", data, max_pixels=3_000_000).size == (SIDE, 48)


def test_an_rgb_photos_colour_profile_goes_with_it(tmp_path: Path) -> None:
    """A phone photo in Display P3 keeps its profile, so the browser shows its colours, not duller ones."""
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # any RGB profile will do
    shown = render(tmp_path, save(Image.new("RGB", (W, H), (10, 200, 30)), "JPEG", icc_profile=icc))
    assert shown.info.get("icc_profile") == icc


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


@pytest.mark.parametrize("where", ["before the pixels", "after the pixels"])
def test_a_small_png_with_an_exif_orientation_is_turned_wherever_the_chunk_is(tmp_path: Path, where: str) -> None:
    """The renderer looks for an eXIf chunk without decoding the PNG (images._png_has_exif): one after the
    pixel data, which Pillow finds only by decoding, still turns the picture; one without is sent as is."""
    img = Image.new("RGB", (30, 20), (255, 0, 0))
    img.paste((0, 0, 255), (15, 0, 30, 20))  # left red, right blue as stored; smaller than SIDE
    exif = img.getexif()
    exif[0x0112] = 6
    plain = save(img, "PNG")
    iend = plain.rindex(b"IEND") - 4
    chunk = _png_chunk(b"eXIf", exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes())
    at = plain.index(b"IDAT") - 4 if where == "before the pixels" else iend
    turned = render(tmp_path / "turned", plain[:at] + chunk + plain[at:])
    assert turned.size == (20, 30)
    rgb = turned.convert("RGB")
    assert close([rgb.getpixel((10, 5)), rgb.getpixel((10, 24))], [(255, 0, 0), (0, 0, 255)])
    originals = tmp_path / "plain"
    originals.mkdir()
    (originals / "x.png").write_bytes(plain)
    sha = hashlib.sha256(plain).hexdigest()
    assert ImageCache(originals, tmp_path / "cache", SIDE).prepare(sha, "x.png").read_bytes() == plain


def test_renditions_are_sent_from_memory_the_most_recent_within_a_budget(tmp_path: Path) -> None:
    originals = tmp_path / "originals"
    originals.mkdir()
    shas = []
    for i in range(3):
        data = save(Image.new("RGB", (W, H), (i * 80, 0, 0)), "PNG")
        (originals / f"{i}.png").write_bytes(data)
        shas.append(hashlib.sha256(data).hexdigest())
    cache = ImageCache(originals, tmp_path / "cache", SIDE)
    assert cache.rendition(shas[0]) is None  # not rendered yet
    path = cache.prepare(shas[0], "0.png")
    kept = cache.rendition(shas[0])
    assert kept is not None and kept.path == path and kept.data == path.read_bytes()
    assert kept.media_type == "image/jpeg"
    path.unlink()  # a file system call is no longer needed to send it
    assert cache.rendition(shas[0]) == kept and cache.prepare(shas[0], "0.png") == path
    sizes = [len(cache.rendition(sha).data) if i else len(kept.data)  # type: ignore[union-attr]
             for i, sha in enumerate(shas) if i == 0 or cache.prepare(sha, f"{i}.png")]
    small = ImageCache(originals, tmp_path / "small", SIDE, keep_bytes=sizes[1] + sizes[2])
    made = [small.prepare(sha, f"{i}.png") for i, sha in enumerate(shas)]
    for p in made:
        p.unlink()
    assert [small.rendition(sha) is not None for sha in shas] == [False, True, True]  # the oldest went first
    assert ImageCache(originals, tmp_path / "off", SIDE, keep_bytes=0).rendition(shas[1]) is None
