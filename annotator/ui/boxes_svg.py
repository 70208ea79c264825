"""A record's image with everyone's boxes drawn over it, as SVG: the dashboard's gallery and the review view."""

from __future__ import annotations

import html
from typing import Any

from annotator.reports import DisputedRecord

__all__ = ["BOX_COLOURS", "disputed_svg"]

# an annotator's boxes in the gallery, by their place in the record's list of answers; the consensus dashed
BOX_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def disputed_svg(d: DisputedRecord, url: str) -> str:
    """One record's image with everyone's boxes drawn over it, in the image's own pixels."""
    w, h = max(d.width, 1), max(d.height, 1)
    shapes, legend = [], []
    for i, (user, drawn) in enumerate(d.drawn):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        legend.append(f"<span class='dash-swatch' style='background:{colour}'></span>{html.escape(user)} "
                      f"({len(drawn)})")
        shapes += [_rect(box, colour, f"{user}: {box['label']}", "") for box in drawn]
    shapes += [_rect(box, "#111827", f"consensus: {box['label']}", " stroke-dasharray='6 4'") for box in d.consensus]
    return (f"<figure><svg viewBox='0 0 {w} {h}' role='img' aria-label='record {d.record_id}'>"
            f"<image href='{html.escape(url)}' x='0' y='0' width='{w}' height='{h}' preserveAspectRatio='none'/>"
            f"{''.join(shapes)}</svg><figcaption>record {d.record_id} · F1 {d.f1:.2f}<br>{''.join(legend)}"
            "</figcaption></figure>")


def _rect(box: dict[str, Any], colour: str, title: str, extra: str) -> str:
    x, y, w, h = (float(v) for v in box["bbox"])
    return (f"<rect x='{x:g}' y='{y:g}' width='{w:g}' height='{h:g}' fill='none' stroke='{colour}' "
            f"stroke-width='2' vector-effect='non-scaling-stroke'{extra}><title>{html.escape(title)}</title>"
            "</rect>")
