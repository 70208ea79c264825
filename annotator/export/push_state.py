"""What was last pushed where: a push is not repeated for a store state the Hub already has.

Kept in the store, for the other replicas on a PostgreSQL database, and in
DATA_DIR, for this process after a restart (the DuckDB store keeps none).
"""

from __future__ import annotations

import json
import logging
import os

from annotator.config import Settings
from annotator.export.token_scrub import describe_error
from annotator.model import utcnow
from annotator.store_protocol import StoreProtocol

log = logging.getLogger(__name__)

STATE_FILE = ".export-state.json"   # in DATA_DIR: what was last pushed where (skips a push after a restart)


def pushed_fingerprint(settings: Settings) -> str | None:
    """The store state this DATA_DIR last pushed to EXPORT_REPO, None when unknown."""
    try:
        state = json.loads((settings.data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state.get("fingerprint") if state.get("repo") == settings.export_repo else None


def save_export_state(store: StoreProtocol, settings: Settings, fingerprint: str, commit_url: str | None = None) -> None:
    """Remember that EXPORT_REPO holds the store state `fingerprint` (best effort: at worst one push more).

    In the store, for the other replicas on a PostgreSQL database, and in
    DATA_DIR, for this process after a restart (the DuckDB store keeps none).
    """
    try:
        store.record_push(settings.export_repo, fingerprint, commit_url)
    except Exception as exc:
        log.warning("export: cannot record the push in the store (%s); another replica may push it once more",
                    describe_error(exc, settings.hf_token))
    path = settings.data_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"repo": settings.export_repo, "fingerprint": fingerprint,
                                   "commit_url": commit_url, "at": utcnow().isoformat()}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("export: cannot write %s (%s); the next start pushes once more", path, exc.strerror or exc)

