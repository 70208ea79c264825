"""One place where a Gradio request becomes an Identity."""

from __future__ import annotations

from typing import Callable, TypeVar

import gradio as gr
from fastapi import FastAPI, Request

from annotator.auth import Access, AuthError, Identity
from annotator.service import InputError
from annotator.ui.gradio_glue import login_user, oauth_userinfo

T = TypeVar("T")


def identify(access: Access, profile: gr.OAuthProfile | None, request: gr.Request | None) -> Identity:
    """Identity from the server-side session only: the OAuth profile or Gradio's login name."""
    username = getattr(request, "username", None) if request is not None else None
    return access.identify(dict(profile) if profile is not None else None, username)


def identify_http(access: Access, gradio_app: FastAPI, request: Request) -> Identity:
    """The same identity for a plain route inside Gradio's app: its OAuth session, else its login token.

    Gradio fills `gr.OAuthProfile` from the session cookie (hf mode) and
    `request.username` from its login token cookie (password mode); this
    reads both the same way, with Gradio's own expiry check.
    """
    return access.identify(oauth_userinfo(request), login_user(gradio_app, request))


def speak(call: Callable[[], T]) -> T:
    """Run a service call; turn refusals into the message Gradio shows the person."""
    try:
        return call()
    except (InputError, AuthError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
