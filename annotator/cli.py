"""Command line: `python -m annotator {ingest,stats,export,adduser,migrate}`.

Each command opens the store itself (`engine.open_store`): on DuckDB it must not
run while the app holds the same DATA_DIR (one process per file; the error says
so); on PostgreSQL (STORE_URL) it may run beside the replicas.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from annotator.auth import AuthError, PasswordFile
from annotator.config import ConfigError, Settings, load_settings
from annotator.task import check_answers_fit, load_task, record_suggestion_column
from annotator.export.hub import ExportError, Exporter
from annotator.export.local import export_local
from annotator.ingest import IngestError, ingest_dataset, ingest_folder
from annotator.runtime import load_gold
from annotator.stats import format_text, summarize
from annotator.store import StoreError
from annotator.engine import describe, open_store

Subparsers = Any  # what ArgumentParser.add_subparsers returns (argparse keeps its class private)


# --- ingest ----------------------------------------------------------------------------------

def _run_ingest(args: argparse.Namespace) -> int:
    settings = load_settings()
    task = load_task(settings.task_file)
    if args.suggestion_column is not None:
        suggestion = args.suggestion_column.strip() or None
    else:
        suggestion = record_suggestion_column(task)
    columns = dict(image_columns=_names(args.image_columns, task.image_columns),
                   text_columns=_names(args.text_columns, task.text_columns))
    if len(columns["image_columns"]) == 1:
        raise IngestError("--image-columns names the columns of a record's several images: give two or more, "
                          "or use --image-column for records of one image.")
    progress = not args.no_progress
    with closing(open_store(settings)) as store:
        if args.folder is not None:
            report = ingest_folder(store, Path(args.folder).expanduser(), settings.images_dir,
                                   suggestion_column=suggestion, progress=progress,
                                   max_pixels=settings.max_image_pixels, **columns)
        elif args.dataset or settings.source_dataset:
            report = ingest_dataset(
                store, args.dataset or settings.source_dataset, settings.images_dir,
                config=args.config if args.config is not None else settings.source_config,
                split=args.split or settings.source_split, where=_dataset_where(args, settings),
                image_column=args.image_column or settings.source_image_column,
                suggestion_column=suggestion, token=settings.hf_token, progress=progress,
                max_pixels=settings.max_image_pixels, **columns)
        else:
            if settings.source_dir is None:
                raise IngestError("nothing to ingest: give --folder or --dataset, or set SOURCE_DIR or SOURCE_DATASET.")
            report = ingest_folder(store, settings.source_dir, settings.images_dir,
                                   suggestion_column=suggestion, progress=progress,
                                   max_pixels=settings.max_image_pixels, **columns)
        total = store.record_count()
    print(report.summary())
    for item, reason in report.skipped:
        print(f"  skipped {item}: {reason}")
    print(f"the store now holds {total} records")
    return 0


def _dataset_where(args: argparse.Namespace, settings: Settings) -> str:
    """The dataset as the person gave it, for ingest's messages: `--dataset X` for what they typed, the
    setting's name for what came from the settings, and the split's default named as one."""
    name = args.dataset or settings.source_dataset
    config = args.config if args.config is not None else settings.source_config
    where = [f"--dataset {shlex.quote(name)}" if args.dataset else f"SOURCE_DATASET={name!r}"]
    if config:
        where.append(f"--config {shlex.quote(config)}" if args.config is not None else f"SOURCE_CONFIG={config!r}")
    if args.split:
        where.append(f"--split {shlex.quote(args.split)}")
    elif os.environ.get("SOURCE_SPLIT", "").strip():
        where.append(f"SOURCE_SPLIT={settings.source_split!r}")
    else:
        where.append(f"split {settings.source_split!r}, the default: --split to change it")
    return ", ".join(where)


def _names(given: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of column names from the command line, else the task file's."""
    if given is None:
        return default
    return tuple(name.strip() for name in given.split(",") if name.strip())


def add_ingest(subparsers: Subparsers) -> None:
    """Add `ingest`: images from a folder or a dataset into the store."""
    parser = subparsers.add_parser(
        "ingest", help="add images from a folder or a dataset to the store",
        description="Add images to the store. Re-running adds only what is new. Without --folder or "
                    "--dataset, reads SOURCE_DATASET or SOURCE_DIR. Do not run while the app uses the same "
                    "DATA_DIR.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--folder", metavar="DIR", help="a folder of images (a class sub-folder's name becomes the image's label field)")
    source.add_argument("--dataset", metavar="NAME", help="a Hub dataset id (default: SOURCE_DATASET)")
    parser.add_argument("--config", metavar="C", default=None, help="dataset config (default: SOURCE_CONFIG)")
    parser.add_argument("--split", default=None, help="dataset split (default: SOURCE_SPLIT, else train)")
    parser.add_argument("--image-column", default=None, help="image column (default: SOURCE_IMAGE_COLUMN, else image)")
    parser.add_argument("--image-columns", metavar="A,B", default=None,
                        help="records of several images: their columns (a dataset's, or the fields of a folder's "
                             "metadata.jsonl/.csv naming the files); default: the task file's [record] images")
    parser.add_argument("--text-columns", metavar="C", default=None,
                        help="columns every record must hold as text, shown above the images (default: the task "
                             "file's [record] texts)")
    parser.add_argument("--suggestion-column", metavar="COL", default=None,
                        help="metadata field holding a suggested label (default: the task's suggestion_column; "
                             "'' for none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_ingest)


# --- stats -----------------------------------------------------------------------------------

def _run_stats(args: argparse.Namespace) -> int:
    settings = load_settings()
    task = load_task(settings.task_file)
    overlap = args.overlap if args.overlap is not None else task.overlap
    with closing(open_store(settings)) as store:
        summary = summarize(store, overlap, load_gold(store, task))
    print(json.dumps(summary, indent=2, sort_keys=True) if args.json else format_text(summary))
    return 0


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("the overlap is a whole number >= 1")
    return value


def add_stats(subparsers: Subparsers) -> None:
    """Add `stats`: progress counts, as text or JSON."""
    parser = subparsers.add_parser(
        "stats", help="print progress counts",
        description="Print records, responses, complete / partly done / untouched records and per-user "
                    "counts, leaving the task's gold records out (their answers are counted apart). Do not run "
                    "while the app uses the same DATA_DIR.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--overlap", type=_positive, default=None,
                        help="answers a record needs (default: the task file's overlap)")
    parser.set_defaults(run=_run_stats)


# --- export ----------------------------------------------------------------------------------

def _run_export(args: argparse.Namespace) -> int:
    if not args.out and not args.push:
        print("error: give --out DIR, --push, or both", file=sys.stderr)
        return 2
    settings = load_settings()
    task = load_task(settings.task_file)
    if args.push and not settings.export_repo:
        raise ConfigError("EXPORT_REPO is not set; set it to the dataset id (owner/name) to push to.")
    with closing(open_store(settings, task)) as store:
        if store.record_count() == 0:
            print(f"error: the store {describe(settings)} has no records; nothing to export", file=sys.stderr)
            return 1
        for name in sorted(check_answers_fit(task, store.answered_questions(), settings.task_file)):
            print(f"warning: the answers to the question {name!r} are not exported: TASK_FILE does not ask it",
                  file=sys.stderr)

        gold = load_gold(store, task)  # gold answers go to their own config, out of the consensus

        def show(done: int, total: int) -> None:
            if not args.quiet:
                print(f"\r  {done}/{total} records", end="", file=sys.stderr, flush=True)

        if args.out:
            out = Path(args.out).expanduser()
            result = export_local(store, task, out, settings.images_dir, progress=show,
                                  box_iou=settings.box_iou, gold=gold)
            if not args.quiet:
                print(file=sys.stderr)
            print(f"wrote {result.summary.records} records and {result.summary.responses} answers to {out} "
                  f"in {result.seconds:.1f}s:")
            for (_, _), path in sorted(result.files.items()):
                print(f"  {path}")
        if args.push:
            exporter = Exporter(store, task, settings, retries=3, retry_initial=2.0, gold=gold)
            try:
                pushed = exporter.push_now(progress=show)
            except ExportError as exc:
                print(f"\nerror: {exc}", file=sys.stderr)
                return 1
            if not args.quiet:
                print(file=sys.stderr)
            print(f"pushed {pushed.records} records and {pushed.responses} answers to {settings.export_repo} "
                  f"in {pushed.seconds:.1f}s" + (f": {pushed.commit_url}" if pushed.commit_url else ""))
    return 0


def add_export(subparsers: Subparsers) -> None:
    """Add `export`: the results to a folder and/or the Hub dataset EXPORT_REPO."""
    parser = subparsers.add_parser(
        "export", help="write the results to a folder and/or push them to EXPORT_REPO",
        description="Export records and answers: --out DIR writes records/responses as Parquet (images "
                    "embedded), JSONL and CSV; --push pushes them to the Hub dataset EXPORT_REPO with a "
                    "dataset card (token from HF_TOKEN). Do not run while the app uses the same DATA_DIR.")
    parser.add_argument("--out", metavar="DIR", help="folder to write the files into")
    parser.add_argument("--push", action="store_true", help="push to EXPORT_REPO")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=_run_export)


# --- adduser ---------------------------------------------------------------------------------

def _run_adduser(args: argparse.Namespace) -> int:
    settings = load_settings()
    password = _read_password(args)
    if password is None:
        return 2
    if len(password) < 8:
        print("error: the password must have at least 8 characters", file=sys.stderr)
        return 2
    PasswordFile(settings.password_file).add(args.name, password)
    # the app reads PASSWORD_FILE once, at start: saying "can now sign in" was untrue while it ran
    print(f"saved {args.name}'s password in {settings.password_file}. The app reads that file only when it "
          f"starts: restart a running app, then {args.name} can sign in.")
    if settings.auth_mode != "password":
        print(f"note: AUTH_MODE is {settings.auth_mode}, so the app asks for no password; set AUTH_MODE=password "
              f"for these users to sign in.")
    return 0


def _stdin_example(name: str) -> str:
    """How to pass a password without a terminal, as a line to copy."""
    return f"printf '%s\\n' \"$PASSWORD\" | python -m annotator adduser {shlex.quote(name)} --password-stdin"


def _read_password(args: argparse.Namespace) -> str | None:
    """The password from standard input or the terminal; None, with the message printed, when there is none.

    Without a terminal getpass falls back to standard input (with a warning), and on an empty one ends in an
    EOFError traceback: so without a terminal only --password-stdin reads one.
    """
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            print(f"error: --password-stdin read nothing; give the password on standard input, for example: "
                  f"{_stdin_example(args.name)}", file=sys.stderr)
            return None
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        print(f"error: there is no terminal to ask the password on; pass it on standard input with "
              f"--password-stdin, for example: {_stdin_example(args.name)}", file=sys.stderr)
        return None
    try:
        return getpass.getpass("password: ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        print("error: no password given; nothing was changed", file=sys.stderr)
        return None


def add_adduser(subparsers: Subparsers) -> None:
    """Add `adduser`: a user for AUTH_MODE=password, or a new password for one."""
    cmd = subparsers.add_parser("adduser", help="add or change a user for AUTH_MODE=password")
    cmd.add_argument("name")
    cmd.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (the way to give it without a terminal)")
    cmd.set_defaults(run=_run_adduser)


# --- migrate ---------------------------------------------------------------------------------

def _run_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    with closing(open_store(settings)) as store:  # opening applies the pending migrations
        version = store.schema_version()
    print(f"{describe(settings)}: schema version {version}")
    return 0


def add_migrate(subparsers: Subparsers) -> None:
    """Add `migrate`: pending schema migrations applied, the schema version printed."""
    parser = subparsers.add_parser(
        "migrate", help="apply pending schema migrations and print the schema version",
        description="Apply pending schema migrations to the store STORE_URL selects (the DuckDB file in "
                    "DATA_DIR when unset) and print the schema version. Safe to run again, and beside running "
                    "replicas on PostgreSQL.")
    parser.set_defaults(run=_run_migrate)


# --- all of them -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code, 2 for a usage, settings, store or permission error."""
    parser = argparse.ArgumentParser(prog="python -m annotator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_ingest, add_stats, add_export, add_adduser, add_migrate):
        add(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ConfigError, StoreError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
