"""What text may reach a store: valid Unicode, without lone surrogates or NUL.

JSON lets a client send `"\\ud800"` (half of a surrogate pair), which Python
keeps as a lone surrogate: DuckDB and Arrow cannot encode it as UTF-8, and
PostgreSQL refuses NUL in text. Either would fail a whole group commit, so
every string is checked here once, where it enters the app (the service, the
admin actions, ingest), and refused with a message before anything is queued.
Pure: no imports from the rest of the project.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TextError", "check_text", "check_tree", "text_problem"]


class TextError(ValueError):
    """A string cannot be stored; the message names the field and what is wrong with it."""


def text_problem(value: str) -> str | None:
    """What makes `value` unstorable ("a NUL character at position 3"), or None when it is fine."""
    nul = value.find("\x00")
    if nul >= 0:
        return f"a NUL character (U+0000) at position {nul}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # only lone surrogates fail: every other code point encodes
        return f"an invalid character (a lone surrogate, U+{ord(value[exc.start]):04X}) at position {exc.start}"
    return None


def check_text(value: str, what: str) -> str:
    """`value` unchanged, or TextError naming `what` (e.g. "The comment") and the bad character."""
    problem = text_problem(value)
    if problem is not None:
        raise TextError(f"{what} contains {problem}; remove it and send it again.")
    return value


def check_tree(value: Any, what: str) -> Any:
    """check_text on every string in a JSON-like value (dict keys too); the value unchanged."""
    if isinstance(value, str):
        return check_text(value, what)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key, f"{what} (a field name)")
            check_tree(item, f"{what} ({str(key)[:40]})")
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_tree(item, what)
    return value
