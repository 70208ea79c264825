"""The annotate view: the page's own script answers through plain JSON routes, memory only.

Gradio draws the frame (title, guidelines) and runs two events per tab: the
page load, which hands the script its first view and tells the service that a
tab opened, and the unload, which tells it that the tab closed (the service
frees a person's leases when their last tab closes). Every click after that
is the script's (static/annotate.js, served by annotator.ui.assets): it posts
the answer to `annotator.ui.clicks` (about 2 ms of server CPU against 5-6 ms for the cheapest Gradio event, and none of
Gradio's front-end update work in the browser) and shows the next record at
once. The view carries the buffered records that come next with
their tickets and preloaded images, so the swap needs no round trip; the
answers go out one at a time, in order, and each answer names the record the
person saw (its ticket), so a burst of presses gives one answer per image
shown and a repeat is ignored by the service.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from typing import Any

import gradio as gr
from markdown_it import MarkdownIt

from annotator.answers import question_specs
from annotator.auth import AuthError
from annotator.task import Question, TaskSpec
from annotator.runtime import Runtime
from annotator.service import View
from annotator.ui import assets
from annotator.ui.identity import identify

# An answer sent with nothing queued behind it asks its reply to wait for the commit (a fraction of a
# second, see annotator.ui.clicks), so "All answers saved" usually needs no request of its own. When a
# reply still says pending (commits lag or fail), the page asks /saved, whose reply waits for the
# commit, and asks again this long after a reply that still says pending.
SAVED_CHECK_DELAY_MS = 1000
CLICK_ROUTE = "/ann"  # the page's JSON routes, see annotator.ui.clicks


def page_view(view: View) -> dict[str, Any]:
    """The JSON the page's script renders: the service's view plus when a waiting tab asks again.

    When a lease frees up goes as epoch seconds (`frees_at`): the page says it in the person's time zone.
    """
    out = view.as_dict()
    out["recheck_after"] = None
    if view.state == "waiting":  # at most every 20 s, waiting tabs only: one cheap request
        out["recheck_after"] = 20.0 if not view.frees_at else min(20.0, max(5.0, view.frees_at - time.time() + 1))
    return out


# What could end or bend a <script> from inside a JSON string: `</script>`, `<!--`, and line separators
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                 "\u2029": "\\u2029"})


def script_json(value: Any) -> str:
    """`value` as JSON that stays inert inside <script>, whatever strings a task file puts in it."""
    return json.dumps(value).translate(_SCRIPT_ESCAPES)


def several(task: TaskSpec) -> bool:
    """Whether the page shows question blocks (static/questions.js): several questions, or one that is
    no label choice. A task of one label (or labels) question keeps the page it always had."""
    return len(task.questions) > 1 or task.questions[0].kind not in ("label", "labels")


def page_script(task: TaskSpec) -> str:
    """What the view puts in <head>: the task's settings as inert JSON, the script and style by versioned URL.

    The script (static/annotate.js: keys, rendering, the answer queue, the saved check; with several
    questions also static/questions.js and .css, loaded first: Gradio keeps the order of <head> scripts)
    and the style are files served by annotator.ui.assets, so a browser loads them once, not with every page.
    """
    first = task.questions[0]
    one = not several(task)
    config = script_json({"labels": [{"name": l.name, "key": l.key} for l in first.labels] if one else [],
                          "multi": first.kind == "labels", "question": first.name,
                          "questions": None if one else question_specs(task),
                          "route": CLICK_ROUTE, "savedDelay": SAVED_CHECK_DELAY_MS, "task": task_key(task)})
    questions = "" if one else (f'<link rel="stylesheet" href="{assets.url("questions.css")}">\n'
                                f'<script src="{assets.url("questions.js")}" defer></script>\n')
    if any(q.kind == "boxes" for q in task.questions):  # issue 16: the drawing layer, before annotate.js starts
        questions += (f'<link rel="stylesheet" href="{assets.url("boxes.css")}">\n'
                      f'<script src="{assets.url("boxes.js")}" defer></script>\n')
    return (f'<script type="application/json" id="ann-config">{config}</script>\n'
            f'<link rel="stylesheet" href="{assets.url("annotate.css")}">\n'
            f'{questions}<script src="{assets.url("annotate.js")}" defer></script>')


def task_key(task: TaskSpec) -> str:
    """A short name for what the task asks (title, guidelines, its questions): the page remembers per task that
    a person has seen its first-visit card, so a new task (or new guidelines) shows the card again."""
    what = [task.title, task.guidelines,
            [(q.name, q.kind, q.title, [(l.name, l.key) for l in q.labels]) for q in task.questions]]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:12]


def _uses_zero(task: TaskSpec) -> bool:
    """Whether a question takes the key 0 (a label's key, or a rating value ending in 0): then 0 answers, and
    Esc alone fits a zoomed image."""
    return any(l.key == "0" for q in task.questions for l in q.labels) or \
        any(q.kind == "rating" and (q.low == 0 or q.high == 10) for q in task.questions)


def _key_rows(task: TaskSpec) -> list[tuple[str | None, str]]:
    """Every key the page answers to and what it does (HTML), for the ? dialog and the first-visit card; with
    question blocks, a heading row (key None) before each question's keys."""
    esc = html.escape
    first = task.questions[0]
    multi = first.kind == "labels"
    if several(task):
        rows = _question_keys(task)
    else:
        rows = [(l.key, f"{'choose or un-choose' if multi else 'answer'} <b>{esc(l.name)}</b>")
                for l in first.labels if l.key]
        rows.append(("Enter", "submit the chosen labels; with none chosen, accept the suggestion" if multi
                     else "accept the suggestion, or keep your earlier answer when changing one"))
    rows += [("Ctrl+Enter", "submit, also from the comment box (Cmd+Enter on a Mac)"),
             ("S", "skip this image"), ("Backspace", "go back to your previous answer, to change it")]
    if task.comment:
        rows.append(("C", "write a comment (optional; it goes with your answer)"))
    rows += [("Esc", "leave the comment box (the keys work again); close this help; fit a zoomed image"),
             ("G", "show or hide the guidelines (over the image)"),
             ("+ / -", "zoom in / out (also the mouse wheel or a pinch; drag or the arrow keys to move)")]
    if not _uses_zero(task):
        rows.append(("0", "fit the whole image again"))
    return [*rows, ("?", "show or hide this help")]


def _keys_table(task: TaskSpec, table_id: str = "") -> str:
    esc = html.escape
    ident = f' id="{table_id}"' if table_id else ""
    cells = "".join(f'<tr><th colspan="2" scope="rowgroup">{what}</th></tr>' if k is None
                    else f"<tr><td><kbd>{esc(k)}</kbd></td><td>{what}</td></tr>" for k, what in _key_rows(task))
    return f"<table{ident}>{cells}</table>"


def _keys_help(task: TaskSpec) -> str:
    """The ? overlay: a dialog listing every key the page answers to (per question, with several)."""
    keyless = [l.name for q in task.questions for l in q.labels if not l.key]
    more = (f'<p>Labels without a key (click them): {html.escape(", ".join(keyless))}</p>' if keyless else "")
    return (f'<div id="ann-help" class="ann-hidden" role="dialog" aria-modal="true" aria-labelledby="ann-help-title" '
            f'tabindex="-1"><div class="ann-dialog"><h2 id="ann-help-title">Keyboard keys</h2>'
            f'{_keys_table(task, "ann-keys")}{more}'
            f'<button type="button" id="btn-help-close">Close (Esc)</button></div></div>')


# the task's guidelines are the organizer's Markdown: rendered without raw HTML (markdown-it escapes it and
# refuses javascript: links), so a task file cannot put markup or script in the page
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def _welcome_card(task: TaskSpec) -> str:
    """The first-visit card over the image: the guidelines and the keys. annotate.js shows it on a person's
    first visit to this task (remembered in the browser per `task_key`); Enter, its button or any action
    closes it."""
    guides = _MARKDOWN.render(task.guidelines) if task.guidelines else "<p>No guidelines were given for this task.</p>"
    return (f'<div id="ann-welcome" class="ann-hidden" role="dialog" aria-labelledby="ann-welcome-title">'
            f'<div class="ann-dialog"><h2 id="ann-welcome-title">Before you start: {html.escape(task.title)}</h2>'
            f'<div class="ann-guides">{guides}</div><h3>Keys</h3>{_keys_table(task)}'
            f'<p class="ann-hint">G shows the guidelines again, ? the keys.</p>'
            f'<button type="button" id="btn-welcome" class="ann-primary">Start (Enter)</button></div></div>')


def _chip(elem_id: str, key: str, name: str, attrs: str) -> str:
    """A choice's button: its key as a badge (and for assistive technology), its name."""
    esc = html.escape
    badge = f'<span class="ann-key">{esc(key)}</span> ' if key else ""
    shortcut = f' aria-keyshortcuts="{esc(key)}"' if key else ""
    return f'<button type="button" id="{elem_id}" class="ann-chip"{attrs}{shortcut}>{badge}{esc(name)}</button>'


def _question_keys(task: TaskSpec) -> list[tuple[str | None, str]]:
    """The ? overlay's rows for a page of question blocks: a heading per question (key None), its keys."""
    esc = html.escape
    rows: list[tuple[str | None, str]] = [
        ("Tab", "the next question (Shift+Tab: the one before); the outlined question takes the keys"),
        ("Enter", "submit, once every required question has an answer (a suggestion counts)")]
    for q in task.questions:
        rows.append((None, f"{esc(q.title)}{'' if q.required else ' (optional)'}"))
        if q.kind == "label":
            rows += [(l.key, f"answer <b>{esc(l.name)}</b>, then on to the next question") for l in q.labels if l.key]
        elif q.kind == "preference":
            rows += [(l.key, f"choose <b>{esc(_choice_name(l.name))}</b>") for l in q.labels]
        elif q.kind == "labels":
            rows += [(l.key, f"choose or un-choose <b>{esc(l.name)}</b>") for l in q.labels if l.key]
        elif q.kind == "boxes":
            rows += _box_keys(q)
        elif q.kind == "rating":
            ends = f" ({esc(q.low_word or str(q.low))} to {esc(q.high_word or str(q.high))})"
            rows.append((f"{str(q.low)[-1]}-{str(q.high)[-1]}",
                         f"rate {q.low} to {q.high}{ends}" + (", 0 is 10" if q.high == 10 else "") +
                         ", then on to the next question"))
        else:
            rows.append((q.key.upper() if q.key else "Tab",
                         "write in the box; Esc leaves it, Ctrl+Enter submits from it"))
    rows.append((None, "Any time"))
    return rows


def _box_keys(q: Question) -> list[tuple[str | None, str]]:
    """The ? overlay's rows for a boxes question (static/boxes.js): drawing, selecting and correcting boxes."""
    esc = html.escape
    return [*[(l.key, f"new boxes are <b>{esc(l.name)}</b>; a selected box becomes one") for l in q.labels if l.key],
            ("Drag", "draw a box on the image (a finger or a pen too); drag the selected box to move it"),
            ("Click", "select the box under the pointer (the smallest one); a click beside the boxes deselects"),
            ("Tab", "with this question outlined: the next box (Shift+Tab: the one before); after the last one, "
                    "the next question"),
            ("Delete", "remove the selected box (Backspace too, when a box is selected)"),
            ("Arrows", "move the selected box by a pixel of the screen; Shift+arrows: resize it"),
            ("Ctrl+Z", "undo the last drawing, move, resize, label change or removal (Cmd+Z on a Mac)"),
            ("Esc", "deselect the box"),
            ("Space+drag", "move a zoomed image (so do two fingers, and the arrow keys when no box is selected)")]


def _choice_name(value: str) -> str:
    """How the page names a preference's choice: "Image 1", "Tie", "Both bad"."""
    return f"Image {value}" if value.isdigit() else value.replace("_", " ").capitalize()


def _question_block(i: int, q: Question) -> str:
    """One question on the page: its title, and its chips (label, labels, rating) or its text box."""
    esc = html.escape
    title = f'<div class="ann-q-title" id="ann-q-{i}-title">{esc(q.title)}' + \
        ("" if q.required else ' <span class="ann-hint">(optional)</span>') + "</div>"
    pressed = ' aria-pressed="false"'
    if q.kind == "preference":  # a choice's value is the image's number, or tie / both_bad
        body = "".join(_chip(f"ann-q-{i}-{j}", l.key.upper() if l.key.isalpha() else l.key, _choice_name(l.name),
                             f' data-value="{esc(l.name)}"{pressed}') for j, l in enumerate(q.labels))
        body = f'<div class="ann-chips">{body}</div>'
    elif q.kind in ("label", "labels", "boxes"):
        body = "".join(_chip(f"ann-q-{i}-{j}", l.key, l.name, f' data-value="{esc(l.name)}"{pressed}')
                       for j, l in enumerate(q.labels))
        body = f'<div class="ann-chips">{body}</div>'
        if q.kind == "boxes":  # the label new boxes get, as text; the boxes drawn, spoken (static/boxes.js)
            body += (f'<span class="ann-hint ann-q-boxes">New boxes: <b id="ann-q-{i}-label">{esc(q.labels[0].name)}'
                     f'</b> · <span id="ann-q-{i}-boxes" aria-live="polite">No boxes.</span></span>')
    elif q.kind == "rating":
        # the number is the chip and its key (10's key is 0: said by its badge)
        chips = "".join(_chip(f"ann-q-{i}-{v}", "0" if v == 10 else "", str(v),
                              f' data-value="{v}"{pressed}' + ("" if v == 10 else f' aria-keyshortcuts="{v}"'))
                        for v in q.scale)
        low = f'<span class="ann-q-word">{esc(q.low_word)}</span>' if q.low_word else ""
        high = f'<span class="ann-q-word">{esc(q.high_word)}</span>' if q.high_word else ""
        body = f'<div class="ann-chips ann-rating">{low}{chips}{high}</div>'
    else:
        key = f' aria-keyshortcuts="{esc(q.key)}"' if q.key else ""
        badge = f'<span class="ann-key">{esc(q.key.upper())}</span> ' if q.key else ""
        body = (f'<label class="ann-q-text">{badge}<textarea rows="2" aria-labelledby="ann-q-{i}-title"{key}>'
                f'</textarea></label><span class="ann-hint" id="ann-q-{i}-count"></span>')
    return (f'<div class="ann-q" id="ann-q-{i}" data-q="{i}" role="group" aria-labelledby="ann-q-{i}-title">'
            f'{title}{body}</div>')


def skeleton(task: TaskSpec, display_side: int) -> str:
    """The view's fixed elements; the script fills in the record, progress and status.

    `display_side` is IMAGE_MAX_SIDE: a zoomed view asks for the larger rendition only of an image whose
    original is larger than that (a smaller one is shown whole already).
    """
    esc = html.escape
    first = task.questions[0]
    multi = first.kind == "labels"
    pressed = ' aria-pressed="false"' if multi else ""
    if several(task):
        blocks = "".join(_question_block(i, q) for i, q in enumerate(task.questions))
        choices = f'<div class="ann-needs-item" id="ann-questions">{blocks}</div>'
    else:
        chips = "".join(_chip(f"label-{i}", l.key, l.name, f' data-label="{esc(l.name)}"{pressed}')
                        for i, l in enumerate(first.labels))
        group = ' role="group" aria-label="Labels"'
        choices = f'<div class="ann-chips ann-needs-item" id="ann-choices"{group}>{chips}</div>'
    # the comment takes no room until C (or its button) opens it over the image's bottom edge
    comment = ('<div id="ann-comment" class="ann-needs-item ann-hidden"><label>Comment <span class="ann-hint">'
               '(optional; Esc leaves the box, Ctrl+Enter submits)</span><textarea rows="2"></textarea></label></div>'
               if task.comment else "")
    comment_button = ('<button type="button" id="btn-comment" class="ann-needs-item" aria-expanded="false" '
                      'aria-controls="ann-comment">Comment (C)</button>' if task.comment else "")
    accept = "Submit (Enter)" if multi or several(task) else "Accept suggestion (Enter)"
    question = "" if several(task) else f"<p>{esc(first.title)}</p>"
    # the stage's height is the window's, not the image's (annotate.js fits it once per window size), and the
    # bar under it sticks to the window's bottom: the chips and buttons never move between records
    # the task's title is the page's one <h1>; title, question and progress share one compact line
    return (f'<div id="ann-root"><div id="ann-head"><h1>{esc(task.title)}</h1>{question}'
            f'<div id="ann-progress-box"><div id="ann-progress"></div></div></div>'
            f'<div id="ann-stage-box"><div id="ann-image" tabindex="-1" aria-label="The image to annotate" '
            f'data-display-side="{display_side}"><div class="ann-state" id="ann-loading">Loading…</div></div>'
            f'<div id="ann-error" class="ann-hidden" role="alert"></div>{_welcome_card(task)}</div>'
            f'<div class="ann-controls" id="ann-bar">{comment}<div class="ann-row ann-chips-line">{choices}</div>'
            f'<div class="ann-row ann-actions"><button type="button" id="btn-back">Back (Backspace)</button>'
            f'<button type="button" id="btn-skip" class="ann-needs-item">Skip (S)</button>'
            f'<button type="button" id="btn-accept" class="ann-primary ann-needs-item">{accept}</button>'
            f'{comment_button}'
            f'<div id="ann-status"></div>'
            f'<button type="button" id="btn-help" class="ann-hint" aria-haspopup="dialog" aria-expanded="false">'
            f'Press <b>?</b> for all keys</button></div></div>'
            f'<div id="ann-live" class="ann-sr" role="status" aria-live="polite"></div>'
            f'<div id="ann-live-status" class="ann-sr" aria-live="polite"></div>'
            f'{_keys_help(task)}</div>')


def boot_html(data: dict[str, Any]) -> str:
    return f'<div id="ann-boot-data" data-view="{html.escape(json.dumps(data), quote=True)}"></div>'


class AnnotateView:
    """Builds the view inside a Blocks; tells the service when a tab opens and closes."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.task = runtime.task

    def build(self, demo: gr.Blocks) -> None:
        task, service = self.task, self.rt.service
        gr.HTML(skeleton(task, self.rt.settings.image_max_side), elem_id="ann-view", js_on_load=None, padding=False)
        # under the view: opening them never pushes the image down
        with gr.Accordion("Guidelines", open=False, elem_id="ann-guidelines"):
            gr.Markdown(task.guidelines or "No guidelines were given for this task.")
        boot = gr.HTML(visible="hidden", elem_id="ann-boot", js_on_load=None)

        def on_load(profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            try:
                who = identify(self.rt.access, profile, request)
            except AuthError as exc:
                return boot_html({"state": "signed_out", "message": str(exc)})
            service.tab_opened(getattr(request, "session_hash", None), who.name)
            return boot_html(page_view(service.next(who)))

        def unload_handler(request: gr.Request) -> None:
            service.tab_closed(getattr(request, "session_hash", None))

        demo.load(on_load, None, [boot], api_name="page_load", queue=False, show_progress="hidden")
        demo.unload(unload_handler)
