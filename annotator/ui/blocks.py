"""The page: sign-in, the annotate view, and the programmatic API endpoints."""

from __future__ import annotations

from typing import Any

import gradio as gr

from annotator.answers import question_specs
from annotator.reports import Dashboard
from annotator.runtime import Runtime
from annotator.ui.admin import register_api
from annotator.ui.annotate import AnnotateView, page_script
from annotator.ui.dashboard import DashboardView
from annotator.ui.review import review_script
from annotator.ui.identity import identify, speak


def build_blocks(runtime: Runtime) -> tuple[gr.Blocks, str]:
    """The Blocks and the <head> it needs (Gradio 6 takes head at launch/mount time)."""
    view = AnnotateView(runtime)
    board = Dashboard(runtime.dashboard_deps())
    dashboard = DashboardView(runtime, board)
    task = runtime.task
    with gr.Blocks(title=task.title, analytics_enabled=False) as demo:
        if runtime.settings.auth_mode == "hf":
            gr.LoginButton(size="sm", elem_id="ann-login")  # compact: the image gets the height
        with gr.Tab("Annotate", id="annotate") as annotate_tab:
            view.build(demo)
        with gr.Tab("Dashboard", id="dashboard", elem_id="tab-dashboard") as dashboard_tab:
            dashboard.build()
        dashboard.wire(dashboard_tab, [annotate_tab])
        _api(runtime)
        register_api(runtime, board, dashboard.actions.gate)
    return demo, page_script(task) + review_script(task)


def _api(runtime: Runtime) -> None:
    """Named endpoints for scripts and load tests; same identity rules as the page."""
    service, access = runtime.service, runtime.access
    questions = question_specs(runtime.task)

    def next(profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """The queue state and, when ready, the record to annotate (`item.record` is its reference);
        `questions`: the task's questions, what to answer each with and their keys."""
        who = speak(lambda: identify(access, profile, request))
        return {**service.next(who).as_dict(), "questions": questions}

    def submit(record: str, answer: dict[str, Any] | list[str] | str, comment: str | None,
               profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Answer the record named by `record` (from `next`) with a value per question name (a one-question
        task also takes a label's name or a list of names); returns what `next` returns for the following
        one, without `questions`."""
        who = speak(lambda: identify(access, profile, request))
        return speak(lambda: service.submit(who, record, answer, comment or None)).as_dict()

    def skip(record: str, profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Skip the record named by `record`; returns the following one."""
        who = speak(lambda: identify(access, profile, request))
        return speak(lambda: service.skip(who, record)).as_dict()

    def progress(profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """My counts and the team's."""
        who = speak(lambda: identify(access, profile, request))
        return vars(service.progress(who))

    for fn in (next, submit, skip, progress):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)
