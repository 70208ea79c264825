"""One place where a Gradio request becomes an Identity."""

from __future__ import annotations

from typing import Callable, TypeVar

import gradio as gr

from annotator.auth import Access, AuthError, Identity
from annotator.service import InputError

T = TypeVar("T")


def identify(access: Access, profile: gr.OAuthProfile | None, request: gr.Request | None) -> Identity:
    """Identity from the server-side session only: the OAuth profile or Gradio's login name."""
    username = getattr(request, "username", None) if request is not None else None
    return access.identify(dict(profile) if profile is not None else None, username)


def speak(call: Callable[[], T]) -> T:
    """Run a service call; turn refusals into the message Gradio shows the person."""
    try:
        return call()
    except (InputError, AuthError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
