"""HF_TOKEN kept out of everything the export and restore say: logs, status, errors, the card.

The token is passed to huggingface_hub only; any text made from an exception or
a server's answer goes through `scrub` (or `describe_error`) first, and
`protect_token_in_logs` cleans every log record, whoever logs it.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def scrub(text: str, token: str | None) -> str:
    """`text` with the token, and anything shaped like a Hugging Face token, replaced by ***."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("hf_***", text)


_log_tokens: set[str] = set()
_log_lock = threading.Lock()


def protect_token_in_logs(token: str | None) -> None:
    """Scrub `token` from every log record made from now on, whoever logs it. Idempotent.

    Installs a log record factory, so it also covers third-party loggers
    (httpx/httpcore at DEBUG print response headers, which a server could echo
    the token into) and exception text attached to records. The Exporter and
    restore_from_hub call it; the app may call it at start-up too.
    """
    if not token:
        return
    with _log_lock:
        if token in _log_tokens:
            return
        first = not _log_tokens
        _log_tokens.add(token)
        if not first:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a broken format string: leave it to logging to report
                return record
            cleaned = message
            for secret in tuple(_log_tokens):
                cleaned = cleaned.replace(secret, "***")
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                scrubbed = text
                for secret in tuple(_log_tokens):
                    scrubbed = scrubbed.replace(secret, "***")
                if scrubbed != text:
                    record.exc_text = scrubbed
            return record

        logging.setLogRecordFactory(factory)


def describe_error(exc: BaseException, token: str | None) -> str:
    """`exc` as one line, "Type: message", scrubbed: what status, errors and logs show of a failure."""
    message = str(exc).strip().replace("\n", " ")
    return scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, token)
