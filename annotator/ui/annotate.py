"""The annotate view: one event per click, memory only, keys for everything.

Each click sends the ticket of the record on screen (a hidden textbox, so a
burst of key presses carries the record the person actually saw) and gets
the next record back in the same response. Events run with no concurrency
limit and queue=False (the cheapest path through Gradio), and with
trigger_mode="multiple" so no key press is dropped; a repeat for a record
already answered is ignored by the service.
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from threading import Lock
from typing import Any, Callable

import gradio as gr

from annotator.auth import AuthError
from annotator.runtime import Runtime
from annotator.service import View
from annotator.ui.identity import identify, speak

# The page confirms "saved" once the person pauses this long: one event per pause, not one per click.
SAVED_CHECK_DELAY_MS = 3000
FAST = dict(queue=False, concurrency_limit=None, trigger_mode="multiple", show_progress="hidden")


def keys_script(label_keys: list[tuple[str, str]], multi: bool) -> str:
    """Keyboard shortcuts and the deferred saved check, injected into <head>."""
    mapping = json.dumps({key: elem for key, elem in label_keys})
    return """<script>
(() => {
  const labelKeys = %s;
  const multi = %s;
  let checkTimer = null;
  const click = (id) => { const el = document.getElementById(id); if (el) { el.click(); return true; } return false; };
  const scheduleCheck = () => {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(() => click('btn-saved-check'), %d);  // only after a real pause
  };
  // Gradio shows no error toast when a queue=False event fails, so a refused click would be silent:
  // show the server's message under the buttons until the next action.
  const showError = (text) => {
    const slot = document.getElementById('ann-error');
    if (slot) { slot.textContent = text || ''; slot.classList.toggle('ann-hidden', !text); }
  };
  const origFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const res = await origFetch(...args);
    try {
      const url = String((args[0] && args[0].url) || args[0]);
      if (!res.ok && url.includes('/gradio_api/run/')) {
        res.clone().json().then((body) => {
          let msg = body && (body.error || body.detail);
          if (msg && typeof msg === 'object') msg = msg.error;
          if (res.status === 401) msg = 'You are signed out (the server may have restarted): reload the page to sign in again.';
          showError(String(msg || 'The server could not do that; reload the page.'));
        }).catch(() => showError('The server could not do that; reload the page.'));
      }
    } catch (err) { /* never break the page */ }
    return res;
  };
  document.addEventListener('click', (e) => {
    const b = e.target.closest && e.target.closest('button');
    if (b && b.id && (b.id.startsWith('label-') || ['btn-accept', 'btn-skip', 'btn-back'].includes(b.id))) {
      showError('');
      scheduleCheck();
    }
  }, true);
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (!document.getElementById('ann-image')) return;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const answering = k in labelKeys || k === 'Enter' || k === 's';
    if (answering && !document.getElementById('ann-img')) return;
    let hit = false;
    if (k in labelKeys) {
      if (multi) {
        const boxes = document.querySelectorAll('#ann-choices input[type=checkbox]');
        const i = Object.keys(labelKeys).indexOf(k);
        if (boxes[i]) { boxes[i].click(); hit = true; }
      } else { hit = click(labelKeys[k]); }
    } else if (k === 'Enter') { hit = click('btn-accept'); }
    else if (k === 's') { hit = click('btn-skip'); }
    else if (k === 'Backspace') { hit = click('btn-back'); }
    else if (k === '?') { const h = document.getElementById('ann-keys'); if (h) { h.classList.toggle('ann-hidden'); hit = true; } }
    if (hit) { e.preventDefault(); }
  });
})();
</script>
<style>
  .ann-hidden { display: none !important; }
  #ann-image img.ann-main { max-width: 100%%; max-height: 70vh; display: block; margin: 0 auto; }
  #ann-image .ann-preload { display: none; }
  #ann-image .ann-state { font-size: 1.3em; padding: 2em; text-align: center; }
  #ann-status .ann-saved { color: #15803d; } #ann-status .ann-pending { color: #a16207; }
  #ann-status .ann-failed, #ann-error { color: #b91c1c; font-weight: bold; }
  .ann-suggestion { color: #9a3412; }
  .ann-bar { background: #e5e7eb; border-radius: 4px; height: 10px; }
  .ann-bar > div { background: #2563eb; height: 10px; border-radius: 4px; }
</style>""" % (mapping, "true" if multi else "false", SAVED_CHECK_DELAY_MS)


def _when(timestamp: float | None) -> str:
    return time.strftime("%H:%M", time.localtime(timestamp)) if timestamp else "soon"


class AnnotateView:
    """Builds the view inside a Blocks and wires its events to the service."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.task = runtime.task
        self.multi = self.task.kind == "multi_label"
        self._sessions: dict[str, str] = {}
        self._open_tabs: Counter[str] = Counter()
        self._sessions_lock = Lock()

    # --- rendering ---------------------------------------------------------

    def _image_html(self, view: View) -> str:
        if view.state == "waiting":
            return (f'<div class="ann-state" id="ann-waiting">Waiting: {view.held_by_others} record(s) are being '
                    f'annotated by others. The first one frees up at {_when(view.frees_at)}; this page checks '
                    f'again by itself.</div>')
        if view.state == "done" or view.record is None:
            return ('<div class="ann-state" id="ann-done">All done: there is nothing left for you to annotate. '
                    'Thank you!</div>')
        r = view.record
        suggestion = ""
        if r.suggestion and not r.editing:
            idx = self.task.label_names.index(r.suggestion)
            suggestion = (f'<div class="ann-suggestion">Suggested: <b>{html.escape(r.suggestion)}</b> '
                          f'(press Enter to accept)</div><style>#label-{idx} {{ outline: 3px solid #ea580c; }}</style>')
        editing = ""
        if r.editing:
            editing = (f'<div class="ann-suggestion" id="ann-editing">Changing your earlier answer: '
                       f'<b>{html.escape(", ".join(r.answer) or "skipped")}</b></div>')
        preload = "".join(f'<img class="ann-preload" src="{html.escape(u)}" alt="">' for u in view.preload)
        return (f'{editing}{suggestion}<img class="ann-main" id="ann-img" data-record="{r.record_id}" '
                f'src="{html.escape(r.image_url)}" width="{r.width}" height="{r.height}" '
                f'alt="record {r.record_id}">{preload}')

    @staticmethod
    def _progress_html(view: View) -> str:
        p = view.progress
        share = 100 * p.team_complete / p.team_total if p.team_total else 100
        return (f'<div id="ann-progress">You: <b>{p.mine_today}</b> today, <b>{p.mine_total}</b> in total · '
                f'Team: <b>{p.team_complete}</b> of {p.team_total} records complete · '
                f'<b>{p.remaining_for_me}</b> left for you'
                f'<div class="ann-bar"><div style="width:{share:.1f}%"></div></div></div>')

    @staticmethod
    def _status_html(view: View) -> str:
        saved = view.saved
        if saved.retrying:
            css = "ann-failed"
        elif saved.pending:
            css = "ann-pending"
        else:
            css = "ann-saved"
        message = f' · <span id="ann-message">{html.escape(view.message)}</span>' if view.message else ""
        return f'<span class="{css}" id="ann-saved">{html.escape(saved.text)}</span>{message}'

    def render(self, view: View) -> list[Any]:
        record = view.record
        waiting = view.state == "waiting"
        interval = 20.0  # a waiting tab asks again at most every 20 s: one cheap event, waiting tabs only
        if waiting and view.frees_at:
            interval = min(20.0, max(5.0, view.frees_at - time.time() + 1))
        out: list[Any] = [
            record.ticket if record else "",
            self._image_html(view),
            self._progress_html(view),
            self._status_html(view),
            gr.Timer(value=interval, active=waiting),
        ]
        chosen = list(record.answer) if record and record.answer else (
            [record.suggestion] if record and record.suggestion else [])
        out += [record.comment if record else "", chosen]
        return out

    # --- identity and sessions ----------------------------------------------

    def _who(self, profile: gr.OAuthProfile | None, request: gr.Request):
        who = speak(lambda: identify(self.rt.access, profile, request))
        session = getattr(request, "session_hash", None)
        if session:
            with self._sessions_lock:
                if self._sessions.get(session) != who.name:
                    if session in self._sessions:
                        self._open_tabs[self._sessions[session]] -= 1
                    self._sessions[session] = who.name
                    self._open_tabs[who.name] += 1
        return who

    def _ended(self, request: gr.Request) -> None:
        """A tab closed: when it was the person's last, free their leases at once."""
        session = getattr(request, "session_hash", None)
        with self._sessions_lock:
            user = self._sessions.pop(session, None)
            if user is None:
                return
            self._open_tabs[user] -= 1
            last = self._open_tabs[user] <= 0
            if last:
                del self._open_tabs[user]
        if last:
            self.rt.service.release(user)

    # --- building ----------------------------------------------------------

    def build(self, demo: gr.Blocks) -> None:
        task, service = self.task, self.rt.service
        gr.Markdown(f"## {html.escape(task.title)}\n{html.escape(task.question)}")
        progress = gr.HTML(elem_id="ann-progress-box")
        with gr.Accordion("Guidelines", open=False):
            gr.Markdown(task.guidelines or "No guidelines were given for this task.")
        image = gr.HTML(elem_id="ann-image")
        ticket = gr.Textbox(visible=False, elem_id="ann-ticket")
        label_buttons: list[tuple[str, gr.Button]] = []
        with gr.Row():
            # single-label tasks use one button per label; the checkbox group stays hidden
            choices = gr.CheckboxGroup(list(task.label_names), label="Labels", elem_id="ann-choices",
                                       visible=self.multi)
            if not self.multi:
                for i, label in enumerate(task.labels):
                    btn = gr.Button(f"{label.name} ({label.key})" if label.key else label.name,
                                    elem_id=f"label-{i}", variant="secondary")
                    label_buttons.append((label.name, btn))
        comment = gr.Textbox(label="Comment (optional)", elem_id="ann-comment", max_lines=4,
                             visible=task.comment)
        with gr.Row():
            back = gr.Button("Back (Backspace)", elem_id="btn-back", size="sm")
            skip = gr.Button("Skip (S)", elem_id="btn-skip", size="sm")
            accept = gr.Button("Submit (Enter)" if self.multi else "Accept suggestion (Enter)",
                               elem_id="btn-accept", variant="primary", size="sm")
        status = gr.HTML(elem_id="ann-status")
        gr.HTML('<div id="ann-error" class="ann-hidden" role="alert"></div>', elem_id="ann-error-box")
        saved_check = gr.Button("check saved", elem_id="btn-saved-check", elem_classes=["ann-hidden"])
        keys = " · ".join(f"<b>{html.escape(l.key)}</b> {html.escape(l.name)}" for l in task.labels if l.key)
        gr.HTML(f'<div id="ann-keys" class="ann-hidden">Keys: {keys} · <b>Enter</b> submit · <b>S</b> skip · '
                f'<b>Backspace</b> back · <b>?</b> show or hide this help</div>')
        timer = gr.Timer(value=30, active=False)

        outputs = [ticket, image, progress, status, timer, comment, choices]
        answer_inputs = [ticket, comment, choices]

        def on_load(profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            try:
                who = identify(self.rt.access, profile, request)
            except AuthError as exc:
                return self._signed_out(str(exc))
            self._who(profile, request)
            return self.render(service.next(who))

        def submit_label(label: str) -> Callable[..., list[Any]]:
            def handler(ticket_value: str, comment_value: str | None, _choices: list[str] | None,
                        profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
                who = self._who(profile, request)
                return self.render(speak(lambda: service.submit(who, ticket_value, [label], comment_value)))
            return handler

        def accept_handler(ticket_value: str, comment_value: str | None, chosen: list[str] | None,
                           profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            who = self._who(profile, request)
            if not self.multi:
                # `chosen` is what the page holds for this record: the earlier answer when changing one
                # (Enter keeps it, rather than silently replacing it with the suggestion), else the suggestion
                kept = [c for c in (chosen or []) if c in task.label_names][:1]
                suggestion = kept[0] if kept else speak(lambda: service.suggestion_for(who, ticket_value))
                if suggestion is None:
                    raise gr.Error("Choose a label with its key or button; this record has no suggestion "
                                   "to accept.", print_exception=False)
                chosen = [suggestion]
            return self.render(speak(lambda: service.submit(who, ticket_value, chosen or [], comment_value)))

        def skip_handler(ticket_value: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            who = self._who(profile, request)
            return self.render(speak(lambda: service.skip(who, ticket_value)))

        def back_handler(ticket_value: str, profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            who = self._who(profile, request)
            return self.render(speak(lambda: service.back(who, ticket_value or None)))

        def recheck_handler(profile: gr.OAuthProfile | None, request: gr.Request) -> list[Any]:
            who = self._who(profile, request)
            return self.render(service.next(who))

        def saved_handler(profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            who = self._who(profile, request)
            return self._status_html(View(state="ready", progress=service.progress(who),
                                          saved=service.wait_saved(who, timeout=3.0)))

        def unload_handler(request: gr.Request) -> None:
            self._ended(request)

        for i, (label, btn) in enumerate(label_buttons):
            btn.click(submit_label(label), answer_inputs, outputs, api_name=f"label_{i}", **FAST)
        accept.click(accept_handler, answer_inputs, outputs, api_name="accept", **FAST)
        skip.click(skip_handler, [ticket], outputs, api_name="skip_record", **FAST)
        back.click(back_handler, [ticket], outputs, api_name="back", **FAST)
        timer.tick(recheck_handler, None, outputs, api_name="recheck", **FAST)
        saved_check.click(saved_handler, None, [status], api_name="saved", queue=False,
                          concurrency_limit=None, show_progress="hidden")
        demo.load(on_load, None, outputs, api_name="page_load", queue=False, show_progress="hidden")
        demo.unload(unload_handler)

    def _signed_out(self, message: str) -> list[Any]:
        return ["", f'<div class="ann-state" id="ann-signin">{html.escape(message)}</div>', "", "",
                gr.Timer(active=False), "", []]
