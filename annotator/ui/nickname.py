"""On the Dashboard tab: the link to the projector view and, with a leaderboard, a person's name on it.

Everyone signed in sees the link. With `LEADERBOARD=on` a closed section
"Your name on the room's screen" says how the room sees you (a number until
you choose) and lets you choose a nickname, or your user name (the opt-in),
or go back to the number; with `anonymous` it only says your number. Loaded
when opened, so a tab that never opens it costs nothing. The rules are
`annotator.nicknames`'; the named endpoint `nickname` does the same for scripts.
"""

from __future__ import annotations

import html

import gradio as gr

from annotator.auth import Identity
from annotator.nicknames import MAX_CHARS, Nicknames
from annotator.runtime import Runtime
from annotator.ui.admin import DASHBOARD_GROUP
from annotator.ui.identity import identify, speak
from annotator.ui.projector import PROJECTOR_ROUTE


class NicknameBox:
    """Built inside the Dashboard tab (`build`), wired with the Blocks (`wire`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.mode = runtime.settings.leaderboard
        self.nicknames = Nicknames(runtime.store, runtime.backend, self.mode)

    def build(self) -> None:
        gr.HTML(f'<a id="dash-projector-link" href="{PROJECTOR_ROUTE}" target="_blank" rel="noopener">'
                f'Projector view for the room ↗</a> <span class="dash-muted">(a page for a big screen: the team '
                f'goal, the pace, the labels{", the leaderboard" if self.mode != "off" else ""})</span>',
                padding=False)
        if self.mode == "off":
            return
        with gr.Accordion("Your name on the room's screen", open=False, elem_id="dash-nickname") as self.section:
            self.status = gr.HTML(elem_id="dash-nickname-status")
            if self.mode == "on":
                self.box = gr.Textbox(label=f"Nickname (at most {MAX_CHARS} characters; empty: a number)",
                                      max_lines=1, max_length=MAX_CHARS, elem_id="dash-nickname-box")
                with gr.Row():
                    self.save = gr.Button("Save nickname", elem_id="dash-nickname-save", size="sm")
                    self.mine = gr.Button("Show my user name", elem_id="dash-nickname-mine", size="sm")

    def _status(self, who: Identity, said: str = "") -> str:
        s = self.nicknames.status(who)
        lines = [f"The room's screen shows you as <b id='dash-shown-as'>{html.escape(s.shown_as)}</b>."]
        if s.can_choose:
            lines.append("Your user name is shown only if you choose it. "
                         f"{s.changes_left} change(s) left.")
        if said:
            lines.insert(0, f"<b>{html.escape(said)}</b>")
        return "<p>" + "<br>".join(lines) + "</p>"

    def wire(self) -> None:
        access = self.rt.access

        def who(profile: gr.OAuthProfile | None, request: gr.Request) -> Identity:
            return speak(lambda: identify(access, profile, request))

        def nickname(nickname: str, profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            """Show me on the projector's leaderboard as `nickname` (empty: as a number); the outcome."""
            caller = who(profile, request)
            return speak(lambda: self.nicknames.set(caller, nickname))

        gr.api(nickname, api_name="nickname", **DASHBOARD_GROUP)
        if self.mode == "off":
            return

        def load(profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            return self._status(who(profile, request))

        def save(text: str, profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            caller = who(profile, request)
            return self._status(caller, speak(lambda: self.nicknames.set(caller, text)))

        def mine(profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            caller = who(profile, request)
            return self._status(caller, speak(lambda: self.nicknames.set(caller, caller.name)))

        common = dict(api_name=False, show_progress="hidden", **DASHBOARD_GROUP)
        self.section.expand(load, None, [self.status], **common)
        if self.mode == "on":
            self.save.click(save, [self.box], [self.status], **common)
            self.box.submit(save, [self.box], [self.status], **common)
            self.mine.click(mine, None, [self.status], **common)
