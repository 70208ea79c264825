"""Boxes drawn on an image: geometry, and agreement between the people who drew them.

Pure: no I/O. A box is `[x, y, w, h]` in the image's original pixels (x, y the
top-left corner), the COCO form the answers, the pre-labels and the export use.
"""

from __future__ import annotations

__all__ = ["clamp_bbox"]


def clamp_bbox(bbox: tuple[float, float, float, float], size: tuple[int, int]) -> list[float] | None:
    """[x, y, w, h] cut to the image and rounded to 0.1 px; None when nothing of it is left inside."""
    x, y, w, h = bbox
    width, height = size
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    x0, y0, x1, y1 = (round(v, 1) for v in (x0, y0, x1, y1))
    if x1 - x0 < 0.1 or y1 - y0 < 0.1:
        return None
    return [x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)]
