"""Settings (environment variables), read once at start-up (the task spec is annotator/task.py).

A wrong value stops start-up with one message that names the setting, the value and what is allowed, because the person who
reads it is an organizer editing a Space's variables, not a developer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping
from urllib.parse import urlsplit, urlunsplit

from annotator.goal import Goal, parse_goal

AuthMode = Literal["hf", "password", "local"]
DbMode = Literal["direct", "snapshot"]
# LEADERBOARD: off; on (a person's chosen nickname, else "Annotator N"); anonymous (always "Annotator N")
LeaderboardMode = Literal["off", "on", "anonymous"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASK_FILE = REPO_ROOT / "data" / "task.toml"
DEFAULT_SOURCE_DIR = REPO_ROOT / "data" / "images"
# MAX_IMAGE_PIXELS: the default (about 8660 x 5770; one decoded takes ~150 MB) and the bounds allowed
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
MIN_IMAGE_PIXELS, MAX_IMAGE_PIXELS_CEILING = 1_000_000, 1_000_000_000


class ConfigError(ValueError):
    """A setting or task-file value is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    task_file: Path
    auth_mode: AuthMode
    admins: frozenset[str]
    allowed_users: frozenset[str]
    allowed_orgs: frozenset[str]
    local_user: str
    password_file: Path
    source_dir: Path | None
    source_dataset: str | None
    source_config: str | None
    source_split: str
    source_image_column: str
    export_repo: str | None
    export_every: float
    export_private: bool
    hf_token: str | None = field(repr=False)
    lease_ttl: float
    prefetch_depth: int
    image_max_side: int
    image_url_ttl: int
    cache_dir: Path
    db_mode: DbMode
    snapshot_every: float
    max_comment_chars: int
    secret_key: str | None = field(repr=False)
    store_url: str | None = field(default=None, repr=False)  # None: the DuckDB file; else PostgreSQL
    store_pool_size: int = 8
    # MAX_IMAGE_PIXELS: larger images are skipped at ingest (with the reason) and never rendered
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # ALLOW_EMPTY: start even when the store has no record (else an empty or all-bad source stops start-up)
    allow_empty: bool = False
    lock_wait: float = 30.0  # DATA_DIR_LOCK_WAIT: seconds to wait for another process to let go of DATA_DIR
    goal: Goal = Goal()  # GOAL: the team goal on the projector and each person's share of it; unset: the whole task
    leaderboard: LeaderboardMode = "off"  # LEADERBOARD: the projector's ranking (annotator/projector.py)
    box_iou: float = 0.5  # BOX_IOU: the overlap two people's boxes need to count as the same object (annotator/boxes.py)

    @property
    def db_path(self) -> Path:
        """Where the live DuckDB file is: on DATA_DIR, or on fast local disk in snapshot mode."""
        if self.db_mode == "snapshot":
            return self.cache_dir / "annotator.duckdb"
        return self.data_dir / "annotator.duckdb"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    def public_items(self) -> dict[str, str]:
        """The active settings by their environment name, secrets masked, for the admin view."""
        def mask(value: str | None) -> str:
            return "(set, hidden)" if value else "(not set)"

        return {
            "DATA_DIR": str(self.data_dir),
            "TASK_FILE": str(self.task_file),
            "AUTH_MODE": self.auth_mode,
            "ADMINS": ",".join(sorted(self.admins)),
            "ALLOWED_USERS": ",".join(sorted(self.allowed_users)),
            "ALLOWED_ORGS": ",".join(sorted(self.allowed_orgs)),
            "SOURCE_DIR": str(self.source_dir or ""),
            "SOURCE_DATASET": self.source_dataset or "",
            "EXPORT_REPO": self.export_repo or "",
            "EXPORT_EVERY": f"{self.export_every:g}",
            "HF_TOKEN": mask(self.hf_token),
            "SECRET_KEY": mask(self.secret_key),
            "LEASE_TTL": f"{self.lease_ttl:g}",
            "PREFETCH_DEPTH": str(self.prefetch_depth),
            "IMAGE_MAX_SIDE": str(self.image_max_side),
            "DB_MODE": self.db_mode,
            "SNAPSHOT_EVERY": f"{self.snapshot_every:g}",
            "CACHE_DIR": str(self.cache_dir),
            "STORE_URL": scrub_url(self.store_url) if self.store_url else "(not set)",
            "STORE_POOL_SIZE": str(self.store_pool_size),
            "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
            "ALLOW_EMPTY": "true" if self.allow_empty else "false",
            "DATA_DIR_LOCK_WAIT": f"{self.lock_wait:g}",
            "GOAL": f"{self.goal.count} {self.goal.unit}" if self.goal.count else "(not set: the whole task)",
            "LEADERBOARD": self.leaderboard,
            "BOX_IOU": f"{self.box_iou:g}",
        }


def _words(raw: str | None) -> frozenset[str]:
    return frozenset(w.strip() for w in (raw or "").split(",") if w.strip())


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float,
            integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind}; set it to {kind} >= {minimum:g}.") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is too small; it must be >= {minimum:g}.")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    if raw not in allowed:
        raise ConfigError(f"{name}={raw!r} is not allowed; use one of: {', '.join(allowed)}.")
    return raw


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value; use true or false.")


def _pixels(env: Mapping[str, str]) -> int:
    """MAX_IMAGE_PIXELS: a number of pixels (not megapixels), within sane bounds."""
    value = int(_number(env, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, minimum=1, integer=True))
    if not MIN_IMAGE_PIXELS <= value <= MAX_IMAGE_PIXELS_CEILING:
        raise ConfigError(f"MAX_IMAGE_PIXELS={value} is out of range: it counts pixels (width x height), "
                          f"not megapixels; set it between {MIN_IMAGE_PIXELS} and {MAX_IMAGE_PIXELS_CEILING}, "
                          f"or leave it unset for {DEFAULT_MAX_IMAGE_PIXELS}.")
    return value


def scrub_url(url: str) -> str:
    """`url` with its password replaced by ***, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unreadable URL)"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)  # libpq also takes ?password=
    netloc = parts.netloc
    if password:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _goal(env: Mapping[str, str]) -> Goal:
    """GOAL: `500 answers` or `200 records` (complete); unset: every record complete."""
    raw = env.get("GOAL", "").strip()
    try:
        return parse_goal(raw)
    except ValueError as exc:
        raise ConfigError(f"GOAL={raw!r} is not a goal: {exc}; or leave GOAL unset for the whole task.") from None


def _box_iou(env: Mapping[str, str]) -> float:
    """BOX_IOU: the intersection over union at which two boxes of one label are the same object."""
    value = _number(env, "BOX_IOU", 0.5, minimum=0.05)
    if value > 1:
        raise ConfigError(f"BOX_IOU={env['BOX_IOU'].strip()!r} is too large; it is an overlap from 0.05 to 1 "
                          "(0.5, the default, is the usual one for object detection).")
    return value


def _store_url(env: Mapping[str, str]) -> str | None:
    """STORE_URL: unset for DuckDB, a postgresql:// (or postgres://) URL for PostgreSQL."""
    raw = env.get("STORE_URL", "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError(f"STORE_URL={scrub_url(raw)!r} is not a valid URL; use "
                          f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave STORE_URL unset for "
                          f"the DuckDB file in DATA_DIR.") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"STORE_URL={scrub_url(raw)!r} is not allowed: only PostgreSQL is supported, as "
                          f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgres://...); leave STORE_URL "
                          f"unset for the DuckDB file in DATA_DIR.")
    return raw


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(env: Mapping[str, str] | None = None) -> str:
    """LOG_LEVEL, in any case (`debug` is DEBUG); read before the rest, as logging starts before the settings.

    `logging` itself would take only capitals and raise a bare ValueError at start-up on anything else.
    """
    env = os.environ if env is None else env
    raw = env.get("LOG_LEVEL", "").strip()
    if not raw:
        return "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={raw!r} is not allowed; use one of: {', '.join(LOG_LEVELS)} "
                          f"(in any case), or leave it unset for INFO.")
    return raw.upper()


def _default_data_dir() -> Path:
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data
    return REPO_ROOT / ".annotator-data"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from the environment; raise ConfigError on the first bad one."""
    env = os.environ if env is None else env
    on_spaces = bool(env.get("SPACE_ID"))
    data_dir = Path(env.get("DATA_DIR", "").strip() or _default_data_dir()).expanduser()
    task_file = Path(env.get("TASK_FILE", "").strip() or DEFAULT_TASK_FILE).expanduser()
    auth_mode = _choice(env, "AUTH_MODE", "hf" if on_spaces else "local", ("hf", "password", "local"))
    source_dataset = env.get("SOURCE_DATASET", "").strip() or None
    source_dir_raw = env.get("SOURCE_DIR", "").strip()
    if source_dir_raw:
        source_dir: Path | None = Path(source_dir_raw).expanduser()
        if not source_dir.is_dir():
            raise ConfigError(f"SOURCE_DIR={source_dir_raw!r} is not a folder; point it at a folder of images.")
    else:
        source_dir = None if source_dataset else DEFAULT_SOURCE_DIR
    export_repo = env.get("EXPORT_REPO", "").strip() or None
    if export_repo is not None and export_repo.count("/") != 1:
        raise ConfigError(f"EXPORT_REPO={export_repo!r} is not a dataset id; use the form 'owner/name'.")
    local_user = env.get("LOCAL_USER", "").strip() or "local"
    admins = _words(env.get("ADMINS"))
    if auth_mode == "local" and not admins:
        admins = frozenset({local_user})
    db_mode = _choice(env, "DB_MODE", "direct", ("direct", "snapshot"))
    store_url = _store_url(env)
    if store_url and db_mode == "snapshot":
        raise ConfigError("DB_MODE=snapshot cannot be used with STORE_URL: snapshots copy the DuckDB file, and "
                          "with STORE_URL set the data lives in PostgreSQL. Unset DB_MODE (or set it to direct), "
                          "or unset STORE_URL.")
    return Settings(
        data_dir=data_dir,
        task_file=task_file,
        auth_mode=auth_mode,  # type: ignore[arg-type]
        admins=admins,
        allowed_users=_words(env.get("ALLOWED_USERS")),
        allowed_orgs=_words(env.get("ALLOWED_ORGS")),
        local_user=local_user,
        password_file=Path(env.get("PASSWORD_FILE", "").strip() or data_dir / "passwords.json"),
        source_dir=source_dir,
        source_dataset=source_dataset,
        source_config=env.get("SOURCE_CONFIG", "").strip() or None,
        source_split=env.get("SOURCE_SPLIT", "").strip() or "train",
        source_image_column=env.get("SOURCE_IMAGE_COLUMN", "").strip() or "image",
        export_repo=export_repo,
        export_every=_number(env, "EXPORT_EVERY", 10.0, minimum=0.1),
        export_private=_flag(env, "EXPORT_PRIVATE", True),
        hf_token=env.get("HF_TOKEN", "").strip() or None,
        lease_ttl=_number(env, "LEASE_TTL", 300.0, minimum=1.0),
        prefetch_depth=int(_number(env, "PREFETCH_DEPTH", 4, minimum=0, integer=True)),
        image_max_side=int(_number(env, "IMAGE_MAX_SIDE", 1280, minimum=64, integer=True)),
        image_url_ttl=int(_number(env, "IMAGE_URL_TTL", 3600, minimum=60, integer=True)),
        cache_dir=Path(env.get("CACHE_DIR", "").strip() or "/tmp/annotator-cache").expanduser(),
        db_mode=db_mode,  # type: ignore[arg-type]
        snapshot_every=_number(env, "SNAPSHOT_EVERY", 60.0, minimum=1.0),
        max_comment_chars=int(_number(env, "MAX_COMMENT_CHARS", 2000, minimum=0, integer=True)),
        secret_key=env.get("SECRET_KEY", "").strip() or None,
        store_url=store_url,
        store_pool_size=int(_number(env, "STORE_POOL_SIZE", 8, minimum=1, integer=True)),
        max_image_pixels=_pixels(env),
        allow_empty=_flag(env, "ALLOW_EMPTY", False),
        lock_wait=_number(env, "DATA_DIR_LOCK_WAIT", 30.0, minimum=0),
        goal=_goal(env),
        leaderboard=_choice(env, "LEADERBOARD", "off", ("off", "on", "anonymous")),  # type: ignore[arg-type]
        box_iou=_box_iou(env),
    )
