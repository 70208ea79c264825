"""The Dashboard tab: team progress for everyone; annotators, agreement, health and actions for admins.

Every handler names the caller from the server-side session and asks
`Dashboard.snapshot(who)`, which decides what that person may see: the
admin sections are filled only for admins, whatever the page shows or hides.
Refresh is a button, the tab's select event, and a 15 s timer that runs only
for an admin while the Dashboard tab is selected (selecting another tab
stops it). Annotators never get a timer: each tick in each open tab would be
a queued event. Every time shown is in the viewer's time zone and names it
(`annotator.ui.zone`); the label chart starts at zero, as the timeline does.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Sequence

import gradio as gr
import pandas as pd

from annotator.auth import AuthError, Identity, SignInStatus
from annotator.metrics import AgreementResult
from annotator.reports import (EXPORT_NOT_CONFIGURED, AgreementSummary, Dashboard, Health,
                               Snapshot, TeamView)
from annotator.runtime import Runtime
from annotator.task import TaskSpec
from annotator.ui.admin import DASHBOARD_GROUP, AdminActions, AdminGate
from annotator.ui.boxes_svg import disputed_svg
from annotator.ui.identity import identify
from annotator.ui.nickname import NicknameBox
from annotator.ui.review import ReviewView
from annotator.ui.zone import ZONE_JS, ViewerZone

REFRESH_SECONDS = 15.0
# "last active" gets the zone's name; "agreement %" and "compared on" come once per question agreement is
# computed for (the question's name added when there are several)
ANNOTATOR_COLUMNS = ["annotator", "answers", "skips", "median s / record", "agreement %", "compared on",
                     "last active", "active", "leases"]
GOLD_COLUMNS = ["gold right %", "gold answers"]  # after agreement, when the task has gold records
# The timeline's time axis, a d3 time format: 24-hour like the "Updated 20:43:55" line above it. Vega's default
# is 12-hour without AM/PM, so 20:25 read as 08:25.
TIME_AXIS_FORMAT = "%H:%M"

CSS = """<style>
  #dash-progress .dash-bar { display: flex; height: 18px; border-radius: 4px; overflow: hidden; background: #e5e7eb; }
  #dash-progress .dash-bar > div { height: 18px; }
  .dash-complete { background: #16a34a; } .dash-partial { background: #2563eb; }
  .dash-skipped { background: #f59e0b; } .dash-untouched { background: #d1d5db; }
  #dash-progress .dash-key { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px; }
  .dash-warn { background: #fef2f2; color: #991b1b; border: 2px solid #dc2626; border-radius: 6px; padding: 8px 12px;
               margin: 6px 0; font-weight: 600; }
  .dash-ok { color: #15803d; }
  .dash-table { border-collapse: collapse; font-size: 0.92em; }
  .dash-table td, .dash-table th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
  .dash-muted { color: #6b7280; }
  .dash-gallery { display: flex; flex-wrap: wrap; gap: 12px; }
  .dash-gallery figure { margin: 0; width: 240px; }
  .dash-gallery svg { width: 240px; height: auto; background: #f3f4f6; }
  .dash-gallery figcaption { font-size: 0.85em; }
  .dash-swatch { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px; }
</style>"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 3, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def progress_html(team: TeamView) -> str:
    p = team.progress
    parts = [("complete", p.complete), ("partly done", p.partial), ("only skipped", p.skipped),
             ("untouched", p.untouched)]
    classes = ["dash-complete", "dash-partial", "dash-skipped", "dash-untouched"]
    total = p.records or 1
    bar = "".join(f'<div class="{c}" style="width:{100 * n / total:.2f}%" title="{_esc(name)}: {n}"></div>'
                  for (name, n), c in zip(parts, classes))
    legend = "".join(f'<span class="dash-key {c}"></span>{_esc(name)} <b id="dash-n-{c[5:]}">{n}</b>'
                     for (name, n), c in zip(parts, classes))
    active = ", ".join(_esc(u) for u in team.active[:30]) + (" …" if len(team.active) > 30 else "")
    return (f'<div id="dash-progress"><h3 style="margin:0 0 6px">Team progress: {p.percent_done:g}% '
            f'<span class="dash-muted">({p.answers_done} of {p.answers_needed} answers needed, '
            f'{p.records} records)</span></h3><div class="dash-bar">{bar}</div><div style="margin-top:6px">'
            f'{legend}</div>'
            f'<div style="margin-top:6px">{p.answers} answers and {p.skips} skips given · '
            f'<b id="dash-active">{len(team.active)}</b> annotator(s) active in the last minutes'
            f'{": " + active if active else ""}</div></div>')


def timeline_frame(team: TeamView) -> pd.DataFrame:
    rows = []
    for point in team.timeline:
        rows.append({"time": point.start, "answers": point.submitted, "kind": "submitted"})
        rows.append({"time": point.start, "answers": point.skipped, "kind": "skipped"})
    frame = pd.DataFrame(rows, columns=["time", "answers", "kind"])
    frame["time"] = pd.to_datetime(frame["time"])
    frame["answers"] = frame["answers"].astype("int64")
    return frame


def timeline_plot() -> gr.LinePlot:
    """The "Answers per 5 minutes" chart, its time axis 24-hour (TIME_AXIS_FORMAT), as every other time shown."""
    return gr.LinePlot(x="time", y="answers", color="kind", elem_id="dash-timeline",
                       label="Answers per 5 minutes", x_title="time (UTC)", y_title="answers",
                       x_axis_format=TIME_AXIS_FORMAT,
                       color_map={"submitted": "#2563eb", "skipped": "#f59e0b"}, y_lim=[0, None])


def labels_frame(team: TeamView) -> pd.DataFrame:
    """One bar per label; with several label questions each bar is named "question: label"."""
    several = len({question for question, _, _ in team.labels}) > 1
    frame = pd.DataFrame([(f"{q}: {label}" if several else label, n) for q, label, n in team.labels],
                         columns=["label", "answers"])
    frame["answers"] = frame["answers"].astype("int64")
    return frame


def annotators_frame(snapshot: Snapshot | None, zone: ViewerZone, scored: Sequence[str],
                     gold: bool = False) -> pd.DataFrame:
    """The per-annotator table, times in `zone`, agreement per question of `scored` (and gold accuracy with
    its count when the task has gold records); empty for anyone but an admin (or no snapshot)."""
    rows = []
    for a in snapshot.admin.annotators if snapshot and snapshot.admin else ():
        agreement = [cell for q in scored for cell in (
            None if a.agreement.get(q) is None else round(100 * a.agreement[q], 1), a.compared.get(q, 0))]
        accuracy = [None if a.gold_accuracy is None else round(100 * a.gold_accuracy, 1), a.gold_answers]
        rows.append([a.user, a.answers, a.skips, a.median_seconds, *agreement, *(accuracy if gold else ()),
                     zone.stamp(a.last_active, labelled=False) if a.last_active else "", "yes" if a.active else "", a.leases])
    return pd.DataFrame(rows, columns=annotator_columns(zone, scored, gold))


def annotator_columns(zone: ViewerZone, scored: Sequence[str], gold: bool = False) -> list[str]:
    """The table's headers: the agreement pair once per question in `scored`, then the gold pair (issue 17)."""
    columns = []
    for c in ANNOTATOR_COLUMNS:
        if c in ("agreement %", "compared on"):
            if c == "agreement %":
                columns += [name for q in scored for name in
                            ((f"agreement % {q}", f"compared on {q}") if len(scored) > 1 else (c, "compared on"))]
                columns += GOLD_COLUMNS if gold else []
            continue
        columns.append(zone.column(c) if c == "last active" else c)
    return columns


def scored_questions(task: TaskSpec) -> list[str]:
    """The questions annotators are compared on: all but text."""
    return [q.name for q in task.questions if q.kind != "text"]


def _result(name: str, r: AgreementResult | None) -> str:
    if r is None:
        return ""
    value = "not defined for these answers" if r.value is None else f"<b>{r.value:.3f}</b>"
    return f"<tr><td>{_esc(name)}</td><td>{value}</td><td class='dash-muted'>{r.n_records} records, " \
           f"{r.n_answers} answers</td></tr>"


def agreement_html(summaries: Sequence[AgreementSummary], image_url: Callable[[int], str] | None = None) -> str:
    """One block per question (headed by its name when there are several); `image_url` gives a record's
    image link for a boxes question's gallery (no gallery without it)."""
    blocks = "".join(_question_agreement_html(s, i, len(summaries) > 1, image_url) for i, s in enumerate(summaries))
    return f"<div id='dash-agreement-box'><h3>Agreement</h3>{blocks}</div>"


def _boxes_html(summary: AgreementSummary, image_url: Callable[[int], str] | None) -> str:
    """A boxes question: mean F1, the consensus per label, and the records people disagree on most."""
    counts = "".join(f"<tr><td>{_esc(label)}</td><td>{n}</td></tr>" for label, n in summary.consensus_boxes)
    body = (f"<table class='dash-table'><tr><td>mean F1 of each pair's boxes</td><td><b>{_num(summary.mean_f1)}</b>"
            "</td></tr></table><table class='dash-table'><tr><th>label</th><th>boxes a majority drew</th></tr>"
            f"{counts}</table>")
    if not summary.disputed or image_url is None:
        return body
    figures = "".join(disputed_svg(d, image_url(d.record_id)) for d in summary.disputed)
    return (f"{body}<p>Records people disagree on most (lowest F1 first); each person's boxes in their colour, "
            f"the consensus dashed:</p><div class='dash-gallery' id='dash-gallery-{_esc(summary.question)}'>"
            f"{figures}</div>")


def _question_agreement_html(summary: AgreementSummary, index: int, named: bool,
                             image_url: Callable[[int], str] | None = None) -> str:
    count_id = "dash-agreement-n" if index == 0 else f"dash-agreement-n-{summary.question}"
    title = f"<h4>{_esc(summary.question)} <span class='dash-muted'>({_esc(summary.kind)})</span></h4>" if named else ""
    if summary.kind == "text":
        return (f"{title}<p><b id='{count_id}'>{summary.n_answers}</b> answer(s) on {summary.n_records} record(s), "
                f"{_num(summary.mean_chars, 1)} characters on average.</p>")
    head = (f"{title}<p>Over the <b id='{count_id}'>{summary.n_records}</b> record(s) with at "
            f"least two answers ({summary.n_answers} answers).</p>")
    if not summary.n_records:
        return f"{head}<p class='dash-muted'>Not enough data yet.</p>"
    fleiss_note = "" if summary.equal_answers or summary.kind == "rating" else (
        "<p class='dash-muted'>Fleiss' kappa needs the same number of answers on every record; those records "
        "differ, so only Krippendorff's alpha applies.</p>")
    if summary.kind == "boxes":
        return head + _boxes_html(summary, image_url)
    if summary.kind == "labels":
        rows = "".join(
            f"<tr><td>{_esc(l.label)}</td><td>{_num(l.alpha.value)}</td><td>{_num(l.fleiss.value)}</td></tr>"
            for l in summary.per_label)
        body = (f"<table class='dash-table'><tr><th>label (present / absent)</th><th>Krippendorff's alpha</th>"
                f"<th>Fleiss' kappa</th></tr>{rows}</table>")
    elif summary.kind == "rating":
        body = "<table class='dash-table'>" + _result("Krippendorff's alpha (ordinal)", summary.alpha) + "</table>"
    else:
        rows = _result("Krippendorff's alpha (nominal)", summary.alpha) + _result("Fleiss' kappa", summary.fleiss)
        body = f"<table class='dash-table'>{rows}</table>"
    return f"{head}{body}{fleiss_note}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _sign_ins_row(s: SignInStatus | None) -> str:
    if s is None:
        return ""
    limited = "; ".join(f"{what}: {', '.join(_esc(k) for k in keys[:10])}{' …' if len(keys) > 10 else ''}"
                        for what, keys in (("addresses", s.limited_addresses), ("names", s.limited_names)) if keys)
    return (f"<tr><td>sign-ins</td><td id='dash-sign-ins'>{s.failed} failed, {s.refused} refused without a check"
            f" · limited now: {limited or 'nobody'}</td></tr>")


def health_html(h: Health, zone: ViewerZone) -> str:
    warnings = "".join(f"<div class='dash-warn'>⚠ {_esc(w)}</div>" for w in h.warnings)
    persistent = {True: "<span class='dash-ok'>yes</span>", False: "<b style='color:#b91c1c'>NO</b>",
                  None: "unknown" if h.storage else "not measured"}[h.persistent]
    storage = ""
    if h.storage:
        storage += f"<tr><td>storage at start</td><td>{'<br>'.join(_esc(line) for line in h.storage)}</td></tr>"
    if h.storage_recommendation:
        storage += f"<tr><td>recommendation</td><td>{_esc(h.storage_recommendation)}</td></tr>"
    if h.export is None:
        export = _esc(EXPORT_NOT_CONFIGURED)
    else:
        e = h.export
        doing = f" {100 * e.progress:.0f}%" if e.progress is not None and e.state in ("building", "uploading") else ""
        export = (f"{_esc(e.repo)}: {_esc(e.state)}{doing}; last result <b>{_esc(e.last_result or 'none yet')}</b>"
                  f" at {_esc(zone.stamp(e.last_attempt_at))}; last success {_esc(zone.stamp(e.last_success_at))}"
                  + (f"; error: {_esc(e.last_error)}" if e.last_error else "")
                  + (f"; next run {_esc(zone.stamp(e.next_run_at))}" if e.next_run_at else ""))
    if h.leases:
        lease_rows = "".join(
            f"<tr><td>{_esc(l.user)}</td><td>{'' if l.on_screen is None else l.on_screen}</td>"
            f"<td>{_esc(', '.join(map(str, l.buffered[:12])) + (' …' if len(l.buffered) > 12 else ''))}</td></tr>"
            for l in h.leases)
        leases = (f"<table class='dash-table'><tr><th>annotator</th><th>on screen</th><th>in buffer</th></tr>"
                  f"{lease_rows}</table>")
    else:
        leases = "<span class='dash-muted'>none</span>"
    writer = (f"queue depth <b>{h.queue_depth}</b> · commits {h.commits} · commit latency p50 "
              f"{_num(h.commit_p50_ms, 1, ' ms')} / p99 {_num(h.commit_p99_ms, 1, ' ms')} · failed commits "
              f"<b>{h.failed_commits}</b>" + (" · <b style='color:#b91c1c'>retrying</b>" if h.writer_retrying else ""))
    clicks = (f"p50 {_num(h.click_p50_ms, 1, ' ms')} / p99 {_num(h.click_p99_ms, 1, ' ms')} "
              f"<span class='dash-muted'>(last {h.clicks} clicks)</span>")
    return (f"<div id='dash-health-box'><h3>Health</h3>{warnings}<table class='dash-table'>"
            f"<tr><td>writer</td><td>{writer}</td></tr>"
            f"<tr><td>click handling</td><td>{clicks}</td></tr>{_sign_ins_row(h.sign_ins)}"
            f"<tr><td>DATA_DIR</td><td>{_esc(h.data_dir)} · persistent: {persistent} · free "
            f"{_bytes(h.free_bytes)} of {_bytes(h.total_bytes)}</td></tr>{storage}"
            f"<tr><td>last export</td><td id='dash-export'>{export}</td></tr>"
            f"<tr><td>leases held</td><td>{leases}</td></tr></table></div>")


class DashboardView:
    """Builds the Dashboard tab's content and wires its refreshes."""

    def __init__(self, runtime: Runtime, board: Dashboard) -> None:
        self.rt = runtime
        self.board = board
        self.actions = AdminActions(runtime, AdminGate())
        self.review = ReviewView(runtime, self.actions.gate)  # issue 17: adjudication, in the admin column
        self.nickname = NicknameBox(runtime)  # the projector link and one's name on it (annotator/ui/nickname.py)

    def build(self) -> None:
        """Call inside the Dashboard tab."""
        gr.HTML(CSS, elem_classes=["dash-css"], padding=False)
        # the viewer's time zone, filled in by ZONE_JS in the page before each dashboard event
        self.zone = gr.Textbox(value="UTC", visible=False, elem_id="dash-zone")
        with gr.Row():
            self.status = gr.Markdown("Open this tab to load the dashboard.", elem_id="dash-status")
            self.refresh = gr.Button("Refresh", elem_id="dash-refresh", size="sm", scale=0)
        self.progress = gr.HTML(elem_id="dash-progress-box")
        with gr.Row():
            self.timeline = timeline_plot()
            self.labels = gr.BarPlot(x="label", y="answers", elem_id="dash-labels", label="Label distribution",
                                     x_title="label", y_title="answers", sort=None,
                                     y_lim=[0, None])  # from zero: the smallest label's bar is never cut away
        self.nickname.build()
        with gr.Column(visible=False, elem_id="dash-admin") as self.admin_section:
            gr.Markdown("### Annotators\nClick a column header to sort.")
            scored = scored_questions(self.rt.task)
            gold = self.rt.task.quality.has_gold
            self.annotators = gr.Dataframe(headers=annotator_columns(ViewerZone(), scored, gold),
                                           elem_id="dash-annotators", interactive=False, max_height=400,
                                           datatype=["str", "number", "number", "number", *["number"] * (2 * len(scored)),
                                                     *["number"] * (2 * gold), "str", "str", "number"])
            with gr.Row():
                self.agreement = gr.HTML(elem_id="dash-agreement")
                self.health = gr.HTML(elem_id="dash-health")
            self.actions.build(self.zone)
            self.review.build()
        self.timer = gr.Timer(value=REFRESH_SECONDS, active=False)

    def outputs(self) -> list[Any]:
        return [self.status, self.progress, self.timeline, self.labels, self.admin_section, self.annotators,
                self.agreement, self.health, self.actions.audit, self.timer]

    def render(self, who: Identity, snap: Snapshot, zone: ViewerZone) -> list[Any]:
        admin = snap.admin
        status = f"Updated {zone.time(snap.at)}" + (f" · refreshes every {REFRESH_SECONDS:g} s while this tab is open"
                                      if admin else " · press Refresh for newer numbers")
        return [status, progress_html(snap.team),
                # Vega draws the times in the browser's zone: the one named here
                gr.LinePlot(value=timeline_frame(snap.team), x_title=zone.column("time"),
                            x_axis_format=TIME_AXIS_FORMAT), labels_frame(snap.team),
                gr.Column(visible=admin is not None), annotators_frame(snap, zone, scored_questions(self.rt.task),
                                                                      self.rt.task.quality.has_gold),
                agreement_html(admin.agreement, lambda rid: self.rt.signer.image_url(
                    rid, who.name, self.rt.settings.image_url_ttl)) if admin else "", health_html(admin.health, zone) if admin else "",
                self.actions.audit_frame(who, zone),
                gr.Timer(value=REFRESH_SECONDS, active=admin is not None)]

    def _signed_out(self, message: str) -> list[Any]:
        return [message, "", None, None, gr.Column(visible=False), annotators_frame(None, ViewerZone(), scored_questions(self.rt.task),
                                                                  self.rt.task.quality.has_gold), "", "",
                self.actions.audit_frame(None, ViewerZone()), gr.Timer(active=False)]

    def wire(self, tab: gr.Tab, other_tabs: Sequence[gr.Tab]) -> None:
        def refresh(zone: str | None, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            try:
                who = identify(self.rt.access, profile, request)
            except AuthError as exc:
                return self._signed_out(str(exc))
            return self.render(who, self.board.snapshot(who), ViewerZone(zone))

        def stop() -> gr.Timer:
            return gr.Timer(active=False)

        common = dict(**DASHBOARD_GROUP, show_progress="hidden", js=ZONE_JS)
        tab.select(refresh, [self.zone], self.outputs(), api_name=False, **common)
        self.refresh.click(refresh, [self.zone], self.outputs(), api_name=False, **common)
        self.timer.tick(refresh, [self.zone], self.outputs(), api_name=False, **common)
        for other in other_tabs:
            other.select(stop, None, [self.timer], api_name=False, queue=False, show_progress="hidden")
        self.actions.wire()
        self.review.wire()
        self.nickname.wire()

