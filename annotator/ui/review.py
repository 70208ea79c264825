"""The Review section of the admin area (issue 17): records by disagreement, everyone's answers, the final one.

It sits in the dashboard's admin-only column. Each handler names the caller
from the server-side session and calls `annotator.admin_actions`, which
refuses anyone but an admin and checks the final answer as annotators'
answers are checked; the admin events wait in the admins' `AdminGate`.

On the page: "Show records by disagreement" lists the records people
answered, lowest agreement first (filtered by a label someone gave and by
who answered); a click on a row shows its images, every answer (for boxes,
everyone's boxes drawn) and the consensus, with the final answer's controls
set to the final answer, else to the consensus. The task's keys choose as
when annotating and Enter saves and moves to the next record of the list
(static/review.js); a text question takes a textbox, a boxes question
"the consensus boxes" or one person's boxes.
"""

from __future__ import annotations

import html
import json
from typing import Any

import gradio as gr
import pandas as pd

from annotator import admin_actions
from annotator.auth import AuthError, Identity
from annotator.model import Answer, AnswerValue, Record
from annotator.reports import DisputedRecord
from annotator.review import ReviewItem
from annotator.runtime import Runtime
from annotator.service import InputError
from annotator.task import Question, TaskSpec
from annotator.ui import assets
from annotator.ui.admin import AdminGate
from annotator.ui.boxes_svg import disputed_svg
from annotator.ui.identity import identify

LIST_COLUMNS = ["record", "agreement %", "answers", "final"]
CONSENSUS = "consensus"   # a boxes question's choice: the boxes a majority drew
USER = "user:"            # ... or one person's boxes: "user:<name>"
LABELLED = ("label", "labels", "preference", "boxes")


def review_script(task: TaskSpec) -> str:
    """What the page's <head> needs for the review keys: the questions' keys as inert JSON, and the script."""
    keys = [{"name": q.name, "kind": q.kind,
             "keys": {label.key: label.name for label in q.labels if label.key} if q.kind != "rating"
             else {str(v)[-1]: str(v) for v in q.scale}}
            for q in task.questions if q.kind in ("label", "labels", "preference", "rating")]
    config = json.dumps({"questions": keys}).replace("<", "\\u003c")
    return (f'\n<script type="application/json" id="review-config">{config}</script>\n'
            f'<script src="{assets.url("review.js")}" defer></script>')


def _ok(message: str) -> str:
    return f"<div class='review-ok' style='color:#15803d'>✔ {html.escape(message)}</div>"


def _error(message: str) -> str:
    return f"<div class='review-error' style='color:#b91c1c;font-weight:600'>✖ {html.escape(message)}</div>"


def _text(value: AnswerValue | None) -> str:
    """A value for the answers table: labels joined, boxes counted."""
    if value is None:
        return ""
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return f"{len(value)} box(es): " + ", ".join(str(b["label"]) for b in value)  # type: ignore[index]
        return ", ".join(map(str, value))
    return str(value)


class ReviewView:
    """Builds the Review section (inside the dashboard's admin column) and wires its events."""

    def __init__(self, runtime: Runtime, gate: AdminGate) -> None:
        self.rt = runtime
        self.task = runtime.task
        self.deps = runtime.admin_deps()
        self.gate = gate

    def build(self) -> None:
        labels = sorted({name for q in self.task.questions if q.kind in LABELLED for name in q.label_names})
        gr.Markdown("### Review and adjudication\nThe records people answered, lowest agreement first. Click one "
                    "to see every answer and set its final answer (the export prefers it to the consensus): the "
                    "task's keys choose as when annotating, Enter saves and opens the next record of the list.",
                    elem_id="review-help")
        with gr.Row(equal_height=True):
            self.label = gr.Dropdown(choices=[("any label", ""), *((n, n) for n in labels)], value="",
                                     label="Someone gave the label", elem_id="review-label", scale=1)
            self.annotator = gr.Textbox(label="Answered by", placeholder="user name (empty: anyone)",
                                        elem_id="review-annotator", scale=1)
            self.load = gr.Button("Show records by disagreement", elem_id="review-load", size="sm", scale=1)
        # the list's rows as shown, kept on the server: the save and take-back handlers mark a row from this, never
        # from a table the client sends back (which any caller can make up, and Gradio's own parsing of a made-up
        # table fails before a handler runs)
        self.rows = gr.State([])
        self.table = gr.Dataframe(headers=LIST_COLUMNS, interactive=False, elem_id="review-list", max_height=300,
                                  label="Records, lowest agreement first: click one to review it")
        with gr.Column(elem_id="review-box"):
            self.record = gr.Textbox(label="Record", interactive=False, elem_id="review-record")
            self.detail = gr.HTML(elem_id="review-detail")
            self.inputs = [self._input(q) for q in self.task.questions]
            with gr.Row():
                # secondary: Gradio's primary (white on orange) fails the contrast check
                self.save = gr.Button("Save the final answer and open the next (Enter)", size="sm",
                                      elem_id="review-save")
                self.clear = gr.Button("Take the final answer back", size="sm", elem_id="review-clear")
            self.result = gr.HTML(elem_id="review-result")

    @staticmethod
    def _input(q: Question) -> Any:
        """The final answer's control for one question, as its kind is answered when annotating."""
        where = dict(label=q.title, elem_id=f"review-q-{q.name}")
        keyed = [(f"{label.name} ({label.key})" if label.key else label.name, label.name) for label in q.labels]
        if q.kind in ("label", "preference"):
            return gr.Radio(choices=keyed, **where)
        if q.kind == "labels":
            return gr.CheckboxGroup(choices=keyed, **where)
        if q.kind == "rating":
            return gr.Radio(choices=[str(v) for v in q.scale], **where)
        if q.kind == "boxes":
            return gr.Radio(choices=[("the consensus boxes", CONSENSUS)], **where)
        return gr.Textbox(max_lines=4, **where)

    # --- what the handlers show ---------------------------------------------------------------

    @staticmethod
    def _rows(items: list[ReviewItem]) -> list[list[Any]]:
        """The list's rows (LIST_COLUMNS), as kept in the session and shown."""
        return [[i.record_id, None if i.agreement is None else round(100 * i.agreement, 1), len(i.answers),
                 "yes" if i.final else ""] for i in items]

    def _show(self, who: Identity, record: Record, item: ReviewItem, message: str) -> list[Any]:
        """The record's textbox, its details, each control set to the final answer (else the consensus), the
        message (HTML)."""
        preset: Answer = item.final.answer if item.final else item.consensus
        return [str(record.id), self._detail(who, record, item),
                *(self._preset(q, preset.get(q.name), item, item.final is not None) for q in self.task.questions),
                message]

    def _preset(self, q: Question, value: Any, item: ReviewItem, final: bool) -> Any:
        if q.kind == "boxes":
            choices = [("the consensus boxes", CONSENSUS)] + [(f"{user}'s boxes", USER + user)
                                                              for user, a in item.answers if q.name in a]
            return gr.Radio(choices=choices, value=None if final else CONSENSUS)
        if q.kind == "labels":
            return list(value or [])
        if q.kind == "rating":
            return None if value is None else str(round(value))
        return value

    def _detail(self, who: Identity, record: Record, item: ReviewItem) -> str:
        settings = self.rt.settings

        def url(number: int) -> str:
            return self.rt.signer.image_url(record.id, who.name, settings.image_url_ttl, number=number)

        boxes = [q for q in self.task.questions if q.kind == "boxes"]
        if boxes:
            q = boxes[0]
            drawn = tuple((user, tuple(a[q.name])) for user, a in item.answers if q.name in a)
            images = disputed_svg(DisputedRecord(record.id, item.agreement or 0.0, record.width, record.height,
                                                 drawn, tuple(item.consensus.get(q.name, ()))), url(1))
        else:
            images = "".join(f"<figure><img src='{html.escape(url(n))}' alt='image {n} of record {record.id}' "
                             f"style='max-width:360px;max-height:360px'><figcaption>image {n}</figcaption></figure>"
                             for n in range(1, record.image_count + 1))
        head = "".join(f"<th>{html.escape(q.title)}</th>" for q in self.task.questions)

        def row(who_: str, answer: Answer, css: str = "") -> str:
            cells = "".join(f"<td>{html.escape(_text(answer.get(q.name)))}</td>" for q in self.task.questions)
            return f"<tr{css}><td>{html.escape(who_)}</td>{cells}</tr>"

        rows = "".join(row(user, answer) for user, answer in item.answers)
        tied = {q.name: "(tie: no majority)" for q in self.task.questions
                if q.kind in ("label", "preference") and q.name in item.consensus and item.consensus[q.name] is None}
        rows += row("consensus", {**item.consensus, **tied}, " class='review-consensus' style='font-style:italic'")
        if item.final:
            rows += row(f"final ({item.final.admin})", item.final.answer,
                        " class='review-final' style='font-weight:600'")
        agreement = "n/a (fewer than two answers)" if item.agreement is None else f"{100 * item.agreement:.0f}%"
        return (f"<div id='review-record-{record.id}'><div class='dash-gallery'>{images}</div>"
                f"<p>Record {record.id} · agreement {agreement} · {len(item.answers)} answer(s)</p>"
                f"<table class='dash-table' id='review-answers'><tr><th>who</th>{head}</tr>{rows}</table></div>")

    def _answer(self, who: Identity, record_id: str, values: list[Any]) -> Answer:
        """The controls' values as an answer object; a boxes choice becomes those boxes."""
        item = None
        answer: Answer = {}
        for q, value in zip(self.task.questions, values):
            if q.kind == "boxes":
                if not value:
                    continue
                if item is None:
                    item = admin_actions.review_record(self.deps, who, record_id)[1]
                source = item.consensus if value == CONSENSUS else dict(item.answers).get(value[len(USER):], {})
                answer[q.name] = source.get(q.name, [])
            elif q.kind == "labels":
                answer[q.name] = list(value or [])
            elif q.kind == "rating":
                if value:
                    answer[q.name] = int(value)
            elif value:
                answer[q.name] = value
        return answer

    # --- events ---------------------------------------------------------------------------------

    def wire(self) -> None:
        deps, gate = self.deps, self.gate
        blank = [gr.skip()] * (2 + len(self.inputs))  # the record, its details and the controls stay

        def show_list(label: str | None, annotator: str | None, profile: gr.OAuthProfile | None,
                      request: gr.Request) -> list[Any]:
            try:
                who = identify(self.rt.access, profile, request)
                items = gate.run(who, lambda: admin_actions.review_queue(deps, who, label, annotator))
                if not items:
                    return [_table([]), [], *blank, _ok("No record matches: nothing to review.")]
                record, item = gate.run(who, lambda: admin_actions.review_record(deps, who, items[0].record_id))
            except (AuthError, InputError) as exc:
                return [gr.skip(), gr.skip(), *blank, _error(str(exc))]
            rows = self._rows(items)
            return [_table(rows), rows,
                    *self._show(who, record, item, _ok(f"{len(items)} record(s), lowest agreement first."))]

        def open_record(rows: list[list[Any]], evt: gr.EventData, profile: gr.OAuthProfile | None,
                        request: gr.Request) -> list[Any]:
            """`evt`: the row clicked. Plain EventData, read by `_clicked_row`: gr.SelectData's constructor
            fails (a traceback in the log) on event data that lacks its keys, which any caller can send."""
            try:
                who = identify(self.rt.access, profile, request)
                row = _clicked_row(getattr(evt, "_data", None), len(rows or []))
                rid = None if row is None else rows[row][0]
                if rid is None:
                    return [*blank, _error("Show the list again, then click a record.")]
                record, item = gate.run(who, lambda: admin_actions.review_record(deps, who, rid))
            except (AuthError, InputError) as exc:
                return [*blank, _error(str(exc))]
            return self._show(who, record, item, "")

        def save(data: dict[Any, Any], profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            """`data`: the list's rows (the session's), the record's textbox and each question's control, by
            component."""
            record_id, rows = data[self.record], data[self.rows] or []
            ids = [row[0] for row in rows]
            try:
                who = identify(self.rt.access, profile, request)
                if not (record_id or "").strip():
                    return [gr.skip(), gr.skip(), *blank, _error("Choose a record from the list first.")]
                answer = self._answer(who, record_id, [data[c] for c in self.inputs])
                result = gate.run(who, lambda: admin_actions.set_final(deps, who, record_id, answer))
                done = result.detail["record_id"]
                after = ids[ids.index(done) + 1:] if done in ids else []
                record, item = gate.run(who, lambda: admin_actions.review_record(deps, who,
                                                                                after[0] if after else done))
            except (AuthError, InputError) as exc:
                return [gr.skip(), gr.skip(), *blank, _error(str(exc))]
            tail = "" if after else " That was the last record of the list."
            marked = _marked(rows, done, "yes")
            return [_table(marked), marked,  # then the next record, or this one again
                    *self._show(who, record, item, _ok(result.message + tail))]

        def take_back(rows: list[list[Any]], record_id: str, profile: gr.OAuthProfile | None,
                      request: gr.Request) -> list[Any]:
            try:
                who = identify(self.rt.access, profile, request)
                result = gate.run(who, lambda: admin_actions.clear_final(deps, who, record_id))
                record, item = gate.run(who, lambda: admin_actions.review_record(deps, who, record_id))
            except (AuthError, InputError) as exc:
                return [gr.skip(), gr.skip(), *blank, _error(str(exc))]
            marked = _marked(rows or [], record.id, "")
            return [_table(marked), marked, *self._show(who, record, item, _ok(result.message))]

        shown = [self.record, self.detail, *self.inputs, self.result]
        common = dict(api_name=False, concurrency_limit=None)  # AdminGate limits the work (annotator.ui.admin)
        self.load.click(show_list, [self.label, self.annotator], [self.table, self.rows, *shown], **common)
        self.table.select(open_record, [self.rows], shown, **common)
        self.save.click(save, {self.rows, self.record, *self.inputs}, [self.table, self.rows, *shown], **common)
        self.clear.click(take_back, [self.rows, self.record], [self.table, self.rows, *shown], **common)


def _table(rows: list[list[Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def _marked(rows: list[list[Any]], record_id: int, final: str) -> list[list[Any]]:
    """The list as shown, its row of `record_id` saying whether the record has a final answer now (the list
    is not read again: its order stays while the admin works through it)."""
    return [[*row[:3], final] if row[0] == record_id else row for row in rows]


def _clicked_row(data: object, count: int) -> int | None:
    """The row a table click names, from its raw event data (`{"index": [row, column], ...}` from the page);
    None unless it is a whole number below `count`, whatever a caller made up."""
    index = data.get("index") if isinstance(data, dict) else None
    row = index[0] if isinstance(index, list) and index else None
    if isinstance(row, int) and not isinstance(row, bool) and 0 <= row < count:
        return row
    return None
