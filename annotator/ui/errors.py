"""Unexpected errors: a sentence and a short reference for the person, the traceback in the log.

An exception's text can hold paths, SQL or settings, so it never reaches the
page (Gradio is mounted with show_error=False). Messages written for people
(`gr.Error`, raised by `identity.speak`) still show as they are.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
from typing import Any, Callable

import gradio as gr
from gradio_client.exceptions import AppError

from annotator.ui.gradio_glue import replace_event_functions

log = logging.getLogger(__name__)


def report(exc: BaseException, where: str) -> str:
    """Log `exc` with its traceback under a new reference; the sentence to show the person."""
    ref = secrets.token_hex(4)
    log.error("unexpected error %s in %s", ref, where, exc_info=exc)
    return (f"Something went wrong on the server (reference {ref}). Try again; if it keeps happening, "
            f"tell the organizer this reference.")


def hide_unexpected_errors(blocks: gr.Blocks) -> None:
    """Wrap every event function of `blocks` so an unexpected exception becomes `report`'s sentence."""
    replace_event_functions(blocks, _guard)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return fn  # the app has no streaming events
    return _async_guarded(fn) if inspect.iscoroutinefunction(fn) else _guarded(fn)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    where = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)  # Gradio reads the signature and type hints through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AppError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other exception is a bug: log it, show a reference
            raise gr.Error(report(exc, where), print_exception=False) from None

    return run


def _async_guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    where = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except AppError:
            raise
        except Exception as exc:  # noqa: BLE001 - as in _guarded
            raise gr.Error(report(exc, where), print_exception=False) from None

    return run
