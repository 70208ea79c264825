"""Admin actions on the dashboard, and the admin API endpoints.

Each handler names the caller from the server-side session and calls one
function of `annotator.admin_actions`, which refuses non-admins before doing
anything. The section is shown only to admins, but nothing relies on that:
a non-admin who triggers a handler (or calls the API) gets a refusal and
changes nothing.

Concurrency: Gradio's concurrency groups are first come, first served, so a
flood of refusals queued in the admins' group would make an admin wait behind
it. The admin events therefore have no Gradio limit (a refusal starts at once
and takes microseconds) and the work waits in `AdminGate` instead, which only
an admin enters. The public `dashboard` endpoint shares the dashboard tab's
group (annotator.ui.dashboard), never the admins'.
"""

from __future__ import annotations

import html
import json
import threading
from typing import Any, Callable, TypeVar

import gradio as gr
import pandas as pd

from annotator import admin_actions
from annotator.auth import Access, AuthError, Identity
from annotator.reports import Dashboard
from annotator.runtime import Runtime
from annotator.service import InputError
from annotator.ui.gradio_glue import file_cache_dir
from annotator.ui.identity import identify, speak
from annotator.ui.zone import ZONE_JS, ViewerZone

AUDIT_COLUMNS = ["at", "who", "action", "detail"]  # "at" gets the viewer's zone name
SETTINGS_COLUMNS = ["setting", "value"]
ADMIN_SLOTS = 2  # admin actions running at once (an export or a download can take seconds)
DASHBOARD_GROUP = dict(concurrency_limit=4, concurrency_id="dashboard")  # the public dashboard's Gradio group
T = TypeVar("T")


class AdminGate:
    """Runs an admin action once the caller is known to be an admin, at most ADMIN_SLOTS at a time."""

    def __init__(self, slots: int = ADMIN_SLOTS) -> None:
        self._slots = threading.BoundedSemaphore(slots)

    def run(self, who: Identity, action: Callable[[], T]) -> T:
        Access.require_admin(who)  # before waiting: nobody else ever waits for, or holds, a slot
        with self._slots:
            return action()


def _ok(message: str) -> str:
    return f"<div id='admin-result' class='admin-ok' style='color:#15803d'>✔ {html.escape(message)}</div>"


def _error(message: str) -> str:
    return f"<div id='admin-result' class='admin-error' style='color:#b91c1c;font-weight:600'>✖ " \
           f"{html.escape(message)}</div>"


class AdminActions:
    """Export now, release a person's records, set their quota, clear their nickname, reopen a record, show
    settings; and the audit log."""

    def __init__(self, runtime: Runtime, gate: AdminGate) -> None:
        self.access = runtime.access
        self.deps = runtime.admin_deps()
        self.gate = gate

    def build(self, zone: gr.Textbox) -> None:
        """Call inside the dashboard's admin-only section; `zone` is the dashboard's viewer-zone box."""
        self.zone = zone
        gr.Markdown("### Admin actions\nEach action is checked on the server and written to the audit log. "
                    "For scripts: the app's [API endpoints and their parameters](/gradio_api/info) "
                    "(call them with `gradio_client`).", elem_id="admin-api")
        with gr.Row():
            self.export = gr.Button("Export to the Hub now", elem_id="admin-export", size="sm")
            self.show_settings = gr.Button("Show active settings", elem_id="admin-settings", size="sm")
            self.download = gr.Button("Prepare downloads (Parquet, JSONL, CSV)", elem_id="admin-download",
                                      size="sm")
        with gr.Row(equal_height=True):
            self.user = gr.Textbox(label="Annotator", placeholder="user name", elem_id="admin-user", scale=2)
            self.release = gr.Button("Release all their records", elem_id="admin-release", size="sm", scale=1)
            self.quota = gr.Textbox(label="Their quota (answers; none: no limit)", value="", placeholder="e.g. 50",
                                    elem_id="admin-quota", scale=1)
            self.set_quota = gr.Button("Set their quota", elem_id="admin-set-quota", size="sm", scale=1)
            self.clear_nickname = gr.Button("Clear their nickname", elem_id="admin-clear-nickname", size="sm",
                                            scale=1)
        with gr.Row(equal_height=True):
            # a textbox: empty until filled (a Number shows 0), and what was typed reaches the check as it is
            self.record = gr.Textbox(label="Record id", value="", placeholder="e.g. 42", elem_id="admin-record",
                                     scale=1)
            self.extra = gr.Number(label=f"Extra answers (1-{admin_actions.MAX_EXTRA})", value=1, precision=0,
                                   minimum=1, maximum=admin_actions.MAX_EXTRA, elem_id="admin-extra", scale=1)
            self.reopen = gr.Button("Reopen for more answers", elem_id="admin-reopen", size="sm", scale=1)
        self.result = gr.HTML(elem_id="admin-result-box")
        self.files = gr.File(label="Results as files", file_count="multiple", interactive=False, visible=False,
                             elem_id="admin-files")
        # written straight into Gradio's cache, which serves them as they are: no second copy per click
        self.downloads = admin_actions.DownloadFolders(file_cache_dir(self.files))
        self.settings = gr.Dataframe(headers=SETTINGS_COLUMNS, visible=False, interactive=False,
                                     elem_id="admin-settings-table", label="Active settings (secrets masked)")
        self.audit = gr.Dataframe(headers=audit_columns(ViewerZone()), interactive=False, elem_id="admin-audit",
                                  label="Audit log (latest 20)", max_height=300)

    def audit_frame(self, who: Identity | None, zone: ViewerZone) -> pd.DataFrame:
        """The latest audit entries for an admin, times in `zone`; an empty table for anyone else."""
        rows = []
        if who is not None and who.is_admin:
            rows = [[zone.stamp(at, labelled=False), actor, action, json.dumps(detail, sort_keys=True)]
                    for at, actor, action, detail in admin_actions.audit_log(self.deps, who)]
        return pd.DataFrame(rows, columns=audit_columns(zone))

    def wire(self) -> None:
        """Each action's reply replaces the whole result area: its message, and the settings table or the
        files only when that action produced them, so nothing from an earlier action stays on screen."""
        access, deps = self.access, self.deps
        hide_settings, hide_files = gr.Dataframe(visible=False), gr.File(visible=False)

        def run(zone: str | None, profile: gr.OAuthProfile | None, request: gr.Request,
                call: Callable[[Identity], tuple[admin_actions.ActionResult, Any, Any]]) -> list[Any]:
            try:
                who = identify(access, profile, request)
                result, settings, files = self.gate.run(who, lambda: call(who))
            except (AuthError, InputError) as exc:
                return [_error(str(exc)), gr.skip(), hide_settings, hide_files]
            return [_ok(result.message), self.audit_frame(who, ViewerZone(zone)), settings, files]

        def only(result: admin_actions.ActionResult) -> tuple[admin_actions.ActionResult, Any, Any]:
            return result, hide_settings, hide_files

        def export_handler(zone: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            return run(zone, profile, request, lambda who: only(admin_actions.export_now(deps, who)))

        def release_handler(user: str, zone: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            return run(zone, profile, request, lambda who: only(admin_actions.release_user(deps, who, user)))

        def quota_handler(user: str, quota: str, zone: str, profile: gr.OAuthProfile | None,
                          request: gr.Request) -> list[Any]:
            return run(zone, profile, request, lambda who: only(admin_actions.set_quota(deps, who, user, quota)))

        def nickname_handler(user: str, zone: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            return run(zone, profile, request, lambda who: only(admin_actions.clear_nickname(deps, who, user)))

        def reopen_handler(record: str | None, extra: float | None, zone: str, profile: gr.OAuthProfile | None,
                           request: gr.Request) -> list[Any]:
            if not (record or "").strip():
                return [_error("Enter a record id first (a whole number from the export or the records table); "
                               "nothing was changed."), gr.skip(), hide_settings, hide_files]
            return run(zone, profile, request,
                       lambda who: only(admin_actions.reopen_record(deps, who, record, extra)))

        def settings_handler(zone: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            def show(who: Identity) -> tuple[admin_actions.ActionResult, Any, Any]:
                items, result = admin_actions.active_settings(deps, who)
                table = pd.DataFrame(sorted(items.items()), columns=SETTINGS_COLUMNS)
                return result, gr.Dataframe(value=table, visible=True), hide_files
            return run(zone, profile, request, show)

        def download_handler(zone: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            def prepare(who: Identity) -> tuple[admin_actions.ActionResult, Any, Any]:
                files, result = admin_actions.prepare_downloads(deps, who, self.downloads)
                return result, hide_settings, gr.File(value=[str(f) for f in files], visible=True)
            return run(zone, profile, request, prepare)

        # AdminGate limits the work (see the module doc); ZONE_JS names the viewer's zone for the audit times
        common = dict(api_name=False, concurrency_limit=None, js=ZONE_JS)
        outputs = [self.result, self.audit, self.settings, self.files]
        self.export.click(export_handler, [self.zone], outputs, **common)
        self.release.click(release_handler, [self.user, self.zone], outputs, **common)
        self.reopen.click(reopen_handler, [self.record, self.extra, self.zone], outputs, **common)
        self.set_quota.click(quota_handler, [self.user, self.quota, self.zone], outputs, **common)
        self.clear_nickname.click(nickname_handler, [self.user, self.zone], outputs, **common)
        self.show_settings.click(settings_handler, [self.zone], outputs, **common)
        self.download.click(download_handler, [self.zone], outputs, **common)


def audit_columns(zone: ViewerZone) -> list[str]:
    return [zone.column(c) if c == "at" else c for c in AUDIT_COLUMNS]


def register_api(runtime: Runtime, board: Dashboard, gate: AdminGate) -> None:
    """Named endpoints: the dashboard for everyone signed in, the admin actions for admins only."""
    access, deps = runtime.access, runtime.admin_deps()

    def who(profile: gr.OAuthProfile | None, request: gr.Request) -> Identity:
        return speak(lambda: identify(access, profile, request))

    def dashboard(profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Team progress for everyone signed in; annotators, agreement and health for admins."""
        return board.snapshot(who(profile, request)).as_dict()

    def admin_export(profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Admins: push the results to EXPORT_REPO now."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.export_now(deps, caller))).as_dict()

    def admin_release_user(user: str, profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Admins: free every record `user` holds."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.release_user(deps, caller, user))).as_dict()

    def admin_reopen(record_id: int, extra: int, profile: gr.OAuthProfile | None,
                     request: gr.Request) -> dict[str, Any]:
        """Admins: ask for `extra` (1-10) more answers on record `record_id`."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.reopen_record(deps, caller, record_id,
                                                                          extra))).as_dict()

    def admin_set_quota(user: str, quota: str, profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Admins: `user` may give `quota` answers (a whole number), or any number ("none")."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.set_quota(deps, caller, user, quota))).as_dict()

    def admin_clear_nickname(user: str, profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Admins: take `user`'s nickname off the projector's leaderboard (they show as their number)."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.clear_nickname(deps, caller, user))).as_dict()

    def admin_set_final(record_id: int, answer_json: str, profile: gr.OAuthProfile | None,
                        request: gr.Request) -> dict[str, Any]:
        """Admins: settle record `record_id` with `answer_json`, an answer as annotators send it (JSON: a value
        per question name); the export prefers it to the consensus."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.set_final(deps, caller, record_id,
                                                                          answer_json))).as_dict()

    def admin_clear_final(record_id: int, profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Admins: take record `record_id`'s final answer back (the export uses the consensus again)."""
        caller = who(profile, request)
        return speak(lambda: gate.run(caller, lambda: admin_actions.clear_final(deps, caller, record_id))).as_dict()

    def admin_review(label: str, annotator: str, profile: gr.OAuthProfile | None,
                     request: gr.Request) -> dict[str, Any]:
        """Admins: the records people answered, lowest agreement first, with every answer, the consensus and
        the final answer; `label` / `annotator` ("" for any) narrow the list down."""
        caller = who(profile, request)
        items = speak(lambda: gate.run(caller, lambda: admin_actions.review_queue(deps, caller, label, annotator)))
        return {"records": [item.as_dict() for item in items]}

    def admin_settings(profile: gr.OAuthProfile | None, request: gr.Request) -> dict[str, Any]:
        """Admins: the settings in force, secrets masked."""
        caller = who(profile, request)
        items, result = speak(lambda: gate.run(caller, lambda: admin_actions.active_settings(deps, caller)))
        return {"settings": items, **result.as_dict()}

    gr.api(dashboard, api_name="dashboard", **DASHBOARD_GROUP)
    for fn in (admin_export, admin_release_user, admin_reopen, admin_set_quota, admin_clear_nickname,
               admin_set_final, admin_clear_final, admin_review, admin_settings):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)  # AdminGate limits the work
