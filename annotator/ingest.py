"""Sources -> store: a local folder of images, or a `datasets` dataset (Hub or local).

Every image is copied byte for byte (never re-encoded) into a content-addressed
folder, `images_dir/<sha256[:2]>/<sha256><ext>`, so a duplicate is stored once
and a half-written file never carries a final name. Records go to the store in
batches, one transaction each; a record whose `source_key` is already there is
skipped before its bytes are read, so re-running an ingest adds only what is new
and an interrupted one resumes where it stopped.

A file that is not a readable image is listed in the report with the reason and
skipped; it never stops an ingest. Only regular files inside the folder are
read (a link out of it, a FIFO, a device or a socket is a named skip, never
opened), none larger than MAX_FILE_BYTES, and an image above MAX_IMAGE_PIXELS
is refused from its header, before it is decoded. What operating systems leave
beside images (Thumbs.db, desktop.ini, __MACOSX/) is left out like hidden files.

Metadata files are read as spreadsheets write them: UTF-8 with or without a
BOM, or UTF-16 with one; `,`, `;` or tab between fields; CRLF line ends. A
line's `file_name` finds its file also in another Unicode form or case; a line
naming no file, or giving a file a value an earlier line gave differently, is
a named skip, so no label vanishes unsaid.

    store = open_store(settings)
    report = ingest_folder(store, Path("data/images"), settings.images_dir)
    print(report.summary())
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import os
import posixpath
import stat
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from annotator.config import DEFAULT_MAX_IMAGE_PIXELS, ConfigError, Settings
from annotator.task import TaskSpec, record_suggestion_column
from annotator.images import ImageError, SavedImage, save_original, shown_size
from annotator.model import NewRecord, RecordImage
from annotator.store_protocol import StoreProtocol
from annotator.text import TextError, check_tree

BATCH_SIZE = 1000
MAX_FILE_BYTES = 100 * 1024 * 1024  # larger files are skipped unread: no annotator image is this big
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
# what operating systems leave in folders and zips beside the images, left out like hidden files: Windows'
# thumbnail cache and folder settings, and the folder of AppleDouble files macOS's zips carry
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__MACOSX"})
LOGGED_SKIPS = 50  # skipped items the start-up log names one per line; the count says how many more
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff",
                            ".ico", ".jfif", ".avif", ".heic", ".ppm", ".pgm", ".pbm", ".tga"})


class IngestError(ConfigError):
    """The source cannot be read at all (wrong name, split or column); the message says what to change."""


def source_setting(settings: Settings) -> str:
    """The setting the images come from, as an organizer would set it (for messages)."""
    if settings.source_dataset:
        return f"SOURCE_DATASET={settings.source_dataset!r} (split {settings.source_split!r})"
    return f"SOURCE_DIR={str(settings.source_dir or '')!r}"


class EmptySourceError(IngestError):
    """Start-up found nothing to annotate and ALLOW_EMPTY is not set: the message names every skipped file."""

    def __init__(self, settings: Settings, report: "IngestReport") -> None:
        source = source_setting(settings)
        lines = [f"there is nothing to annotate: {source} gave no usable image"
                 + (f" ({len(report.skipped)} skipped):" if report.skipped else " (it holds no image files).")]
        lines += [f"  {item}: {reason}" for item, reason in report.skipped]
        lines.append("Put the images there or point the setting at them (SOURCE_DIR for a folder, "
                     "SOURCE_DATASET for a Hub dataset); set ALLOW_EMPTY=1 if starting with no records is "
                     "intended.")
        super().__init__("\n".join(lines))


@dataclass
class IngestReport:
    """What one ingest did. `skipped` holds (name, reason) for every item left out."""
    source: str
    added: int = 0
    already_present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, skipped: int = 0) -> str:
        """The counts and warnings; with `skipped`, also that many skipped items with their reasons, so a log
        read on a Space (where nobody runs the command line) says which files to fix, not only how many."""
        text = (f"{self.source}: {self.added} added, {self.already_present} already present, "
                f"{len(self.skipped)} skipped in {self.seconds:.1f} s")
        for warning in self.warnings:
            text += f"\nwarning: {warning}"
        for item, reason in self.skipped[:skipped]:
            text += f"\n  skipped {item}: {reason}"
        if 0 < skipped < len(self.skipped):
            text += (f"\n  ... and {len(self.skipped) - skipped} more skipped (`python -m annotator ingest` "
                     f"with the same settings lists them all)")
        return text


# --- shared helpers ---------------------------------------------------------

def _too_big(size: int) -> str:
    return f"too large: {size / 2**20:.0f} MB, the limit is {MAX_FILE_BYTES // 2**20} MB"


def _read_file(path: Path, root: Path | None) -> bytes:
    """The bytes of the regular file at `path`; raises ImageError with the reason to skip it.

    With `root` (resolved), the file the path leads to must lie inside it and
    not be hidden: a link to /etc/passwd or to DATA_DIR/.secret_key is never
    opened. FIFOs, devices and sockets are refused from their metadata before
    any open (a FIFO would block, /dev/zero would never end); the open itself
    cannot block or follow a link swapped in meanwhile, and reads stop at
    MAX_FILE_BYTES.
    """
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise ImageError("a link to nothing (its target does not exist)" if path.is_symlink()
                         else "removed while ingest ran") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
        raise ImageError(f"cannot read ({getattr(exc, 'strerror', None) or 'a loop of links'})") from None
    if root is not None:
        try:
            inside = real.relative_to(root)
        except ValueError:
            raise ImageError("a link to outside the folder") from None
        if any(part.startswith(".") for part in inside.parts):
            raise ImageError("a link to a hidden file")
    try:
        info = os.stat(real)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageError(_too_big(info.st_size))
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        opened = os.fstat(f.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise ImageError("not a regular file")
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ImageError(f"cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_too_big(len(data)))
    if not data:
        raise ImageError("empty file")
    return data


def _suggestion(metadata: dict[str, Any], column: str | None) -> str | None:
    if not column:
        return None
    value = metadata.get(column)
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    if value is None or isinstance(value, (dict, bytes)):
        return None
    return str(value)


class _Batches:
    """Collects records and hands them to the store BATCH_SIZE at a time."""

    def __init__(self, store: StoreProtocol, report: IngestReport, batch_size: int) -> None:
        self.store, self.report, self.batch_size = store, report, max(1, batch_size)
        self.rows: list[NewRecord] = []

    def add(self, row: NewRecord) -> None:
        try:  # text a store cannot keep (annotator/text.py) skips this image, not the whole batch
            check_tree([row.source_key, row.image_path, row.suggestion, row.metadata], "Its file name or metadata")
        except TextError as exc:
            name = row.source_key.encode("utf-8", "backslashreplace").decode("utf-8")
            self.report.skipped.append((name, str(exc)))
            return
        self.rows.append(row)
        if len(self.rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            added = len(self.store.add_records(self.rows))
            self.report.added += added
            self.report.already_present += len(self.rows) - added
            self.rows = []


def _progress(items: Iterable[Any], enabled: bool, total: int | None, desc: str) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, total=total, desc=desc, unit="image", file=sys.stderr)


# --- local folder -----------------------------------------------------------

def _list_files(folder: Path, exclude: Path | None) -> list[str]:
    """Every file under `folder` as a relative posix path, sorted; hidden files and folders left out, and
    the files operating systems leave beside images (SYSTEM_FILES, SYSTEM_FOLDERS): a folder unzipped from
    a Mac or copied from Windows would otherwise list them all as skipped, burying the real problems."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SYSTEM_FOLDERS
                         and (exclude is None or (root_path / d).resolve() != exclude))
        rel_root = root_path.relative_to(folder).as_posix()
        for name in files:
            if not name.startswith(".") and name.lower() not in SYSTEM_FILES:
                found.append(name if rel_root == "." else f"{rel_root}/{name}")
    return sorted(found, key=lambda p: p.split("/"))


def _printable(rel: str) -> str:
    """A path from the file system as text a store keeps: a name that is not UTF-8 (a zip made on Windows,
    unpacked on Linux, gives `caf\udc82.jpg`) has its odd bytes written out (`caf\\x82.jpg`), the same at
    every ingest, so the image is ingested under that name instead of skipped for its name."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _csv_reader(text: str) -> csv.DictReader:
    """A metadata.csv's rows. Its separator is the one its header line uses most of `,` `;` and tab (a
    spreadsheet saved in a French or German locale separates with `;`), and its column names lose
    surrounding spaces (`file_name, label`)."""
    header = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=header.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if reader.fieldnames is not None:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    return reader


def _metadata_text(data: bytes) -> str:
    """A metadata file's text: UTF-8 (with or without a byte order mark), or UTF-16 with its mark (what
    spreadsheets save as "Unicode text"); raises UnicodeDecodeError for anything else."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def _inside(rel_dir: str, file_name: object) -> str | None:
    """`file_name` from a metadata file in `rel_dir`, as a path relative to the root; None if it leaves it."""
    if not isinstance(file_name, str) or not file_name.strip():
        return None
    name = file_name.strip().replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    joined = posixpath.normpath(posixpath.join(rel_dir, name)) if rel_dir else posixpath.normpath(name)
    if joined == ".." or joined.startswith("../") or joined == ".":
        return None
    return joined


def _metadata_entries(folder: Path, root: Path, files: list[str], report: IngestReport
                      ) -> Iterator[tuple[str, str, int, Any]]:
    """(metadata file, its folder, line number, entry) for every line of every metadata.jsonl / .csv."""
    for rel in files:
        name = posixpath.basename(rel)
        if name not in METADATA_FILES:
            continue
        rel_dir = posixpath.dirname(rel)
        try:
            text = _metadata_text(_read_file(folder / rel, root))
        except ImageError as exc:
            report.skipped.append((rel, f"cannot read the metadata file: {exc}"))
            continue
        except UnicodeDecodeError:
            report.skipped.append((rel, "cannot read the metadata file: it is not UTF-8 text (save it again as "
                                        "UTF-8, in a spreadsheet \"CSV UTF-8\")"))
            continue
        entries: list[tuple[int, Any]] = []
        if name.endswith(".jsonl"):
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entries.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    report.skipped.append((f"{rel} line {number}", f"not valid JSON ({exc.msg})"))
        else:
            entries = [(number, dict(row)) for number, row in enumerate(_csv_reader(text), 2)]
        for number, entry in entries:
            yield rel, rel_dir, number, entry


def _file_index(files: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The folder's files by their name in Unicode NFC, and by that name case-folded (see `_find_file`)."""
    by_nfc: dict[str, str] = {}
    by_folded: dict[str, list[str]] = {}
    for rel in files:
        nfc = unicodedata.normalize("NFC", rel)
        by_nfc.setdefault(nfc, rel)
        by_folded.setdefault(nfc.casefold(), []).append(rel)
    return by_nfc, by_folded


def _find_file(target: str, present: set[str], index: tuple[dict[str, str], dict[str, list[str]]]) -> str | None:
    """The folder's file a metadata line names: exactly, else the same name in another Unicode form (a Mac
    writes `café` decomposed, a spreadsheet composed), else the one file whose name differs only in case
    (`IMG_1.jpg` for `IMG_1.JPG`, as Windows and macOS open it). None when there is no such file."""
    if target in present:
        return target
    by_nfc, by_folded = index
    nfc = unicodedata.normalize("NFC", target)
    if nfc in by_nfc:
        return by_nfc[nfc]
    folded = by_folded.get(nfc.casefold(), [])
    return folded[0] if len(folded) == 1 else None


def _read_metadata(folder: Path, root: Path, files: list[str], report: IngestReport) -> dict[str, dict[str, Any]]:
    """Fields per file from every metadata.jsonl / metadata.csv (its `file_name` is relative to its folder).

    A line is skipped and named when its file is not in the folder (a typo, a file left out of the zip:
    otherwise its labels vanish unsaid) or when it gives a file a field value an earlier line gave
    differently (the first stands; silently taking the last mislabels the image)."""
    fields: dict[str, dict[str, Any]] = {}
    where_set: dict[tuple[str, str], str] = {}
    present, index = set(files), _file_index(files)
    for rel, rel_dir, number, entry in _metadata_entries(folder, root, files, report):
        where = f"{rel} line {number}"
        if not isinstance(entry, dict) or "file_name" not in entry:
            report.skipped.append((where, "no file_name field"))
            continue
        target = _inside(rel_dir, entry["file_name"])
        if target is None:
            report.skipped.append((where, f"file_name {entry['file_name']!r} is outside the folder"))
            continue
        found = _find_file(target, present, index)
        if found is None or posixpath.basename(found) in METADATA_FILES:
            report.skipped.append((where, f"file_name {entry['file_name']!r}: no such file in the folder "
                                          f"(hidden files are left out); correct the name or add the file"))
            continue
        extra = {str(k): v for k, v in entry.items() if k != "file_name" and k is not None}
        known = fields.setdefault(found, {})
        clash = next((k for k, v in extra.items() if k in known and known[k] != v), None)
        if clash is not None:
            report.skipped.append((where, f"{found} is already given {clash} {known[clash]!r} on "
                                          f"{where_set[(found, clash)]}; this line's {extra[clash]!r} is left "
                                          f"out (keep one line per file)"))
            continue
        for k, v in extra.items():
            if k not in known:
                known[k] = v
                where_set[(found, k)] = where
    return fields


def ingest_folder(store: StoreProtocol, folder: Path, images_dir: Path, *, suggestion_column: str | None = "label",
                  progress: bool = False, batch_size: int = BATCH_SIZE,
                  max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, image_columns: Sequence[str] = (),
                  text_columns: Sequence[str] = ()) -> IngestReport:
    """Ingest every image under `folder` (recursively, sorted by path).

    A file in a sub-folder gets the sub-folder's name (the first component under
    `folder`) as `metadata["label"]`; `metadata.jsonl` / `metadata.csv` files
    (a `file_name` column, relative to the metadata file) add fields per image.
    The record's suggestion is `metadata[suggestion_column]` when present.
    `source_key` is "folder:" + the path relative to `folder`. Hidden files and
    folders, and `images_dir` itself when it lies inside `folder`, are left out;
    links to outside `folder`, anything but regular files, and images above
    `max_pixels` are skipped with the reason.

    With `image_columns` (records of several images), a record is a line of a
    metadata file instead, naming its image files in those fields (see
    `_ingest_rows`); `text_columns` are the fields each line must hold as text.
    """
    started = time.monotonic()
    folder = Path(folder)
    images_dir = Path(images_dir)
    report = IngestReport(source=f"folder {folder}")
    if not folder.is_dir():
        raise IngestError(f"{folder} is not a folder; point SOURCE_DIR (or --folder) at a folder of images.")
    resolved, root = images_dir.resolve(), folder.resolve()
    if resolved == root or resolved in root.parents:
        raise IngestError(f"the source folder {folder} is inside {images_dir}, where ingest keeps its own copies "
                          f"of the images; move the source images to another folder and point SOURCE_DIR "
                          f"(or --folder) there.")
    files = _list_files(folder, resolved)
    if image_columns:
        _ingest_rows(store, folder, root, files, images_dir, report, image_columns=image_columns,
                     text_columns=text_columns, suggestion_column=suggestion_column, progress=progress,
                     batch_size=batch_size, max_pixels=max_pixels)
        report.seconds = time.monotonic() - started
        return report
    metadata_by_file = _read_metadata(folder, root, files, report)
    existing = store.source_keys()
    batches = _Batches(store, report, batch_size)
    suggested = 0
    images = [rel for rel in files if posixpath.basename(rel) not in METADATA_FILES]
    for rel in _progress(images, progress, len(images), "ingest"):
        name = _printable(rel)
        key = "folder:" + name
        if key in existing:
            report.already_present += 1
            continue
        try:
            data = _read_file(folder / rel, root)
            relative, sha, width, height = save_original(data, images_dir, max_pixels)
        except ImageError as exc:
            reason = str(exc)
            if reason == "not an image" and Path(rel).suffix.lower() in IMAGE_SUFFIXES:
                reason = "not an image this app can read (convert it to JPEG or PNG)"
            report.skipped.append((name, reason))
            continue
        metadata: dict[str, Any] = {}
        if "/" in rel:
            metadata["label"] = name.split("/", 1)[0]
        metadata.update(metadata_by_file.get(rel, {}))
        suggestion = _suggestion(metadata, suggestion_column)
        # a field of another form (a boxes question's list of boxes) is a suggestion too, read per question
        suggested += bool(suggestion_column) and metadata.get(suggestion_column) is not None
        batches.add(NewRecord(key, relative, sha, width, height, len(data), metadata, suggestion))
        existing.add(key)
    batches.flush()
    if suggestion_column and report.added and not suggested:
        report.warnings.append(f"no image has a {suggestion_column!r} field, so none has a suggestion "
                               f"(put images in class sub-folders or add a metadata.jsonl)")
    report.seconds = time.monotonic() - started
    return report


def _texts_missing(row: dict[str, Any], text_columns: Sequence[str]) -> str | None:
    """Why a record's texts cannot be shown (a field missing or not text), else None."""
    for col in text_columns:
        if not isinstance(row.get(col), str):
            return f"no {col!r} text" if row.get(col) is None else f"{col!r} is not text"
    return None


def _save_images(data: Sequence[bytes], columns: Sequence[str], images_dir: Path, max_pixels: int
                 ) -> tuple[SavedImage, tuple[RecordImage, ...]]:
    """A record's images stored (`images.save_original`, each checked like a one-image record's): the first as
    the record's own, the rest as `more_images`. An ImageError names the column of the image at fault; the
    images stored before it stay unreferenced (content-addressed: a later ingest of them reuses the file)."""
    saved = []
    for col, payload in zip(columns, data):
        try:
            saved.append(save_original(payload, images_dir, max_pixels))
        except ImageError as exc:
            raise ImageError(f"{col}: {exc}") from None
    more = tuple(RecordImage(col, s.path, s.sha256, s.width, s.height, len(payload))
                 for col, s, payload in zip(columns[1:], saved[1:], data[1:]))
    return saved[0], more


def _ingest_rows(store: StoreProtocol, folder: Path, root: Path, files: list[str], images_dir: Path,
                 report: IngestReport, *, image_columns: Sequence[str], text_columns: Sequence[str],
                 suggestion_column: str | None, progress: bool, batch_size: int, max_pixels: int) -> None:
    """Records of several images from a folder: each line of a metadata.jsonl / .csv is one record, its
    `image_columns` fields naming image files relative to the metadata file (inside the folder), e.g.
    {"image_a": "a/1.png", "image_b": "b/1.png", "prompt": "..."}. Every other field is the record's
    metadata. A line with a field missing, a file outside the folder or unreadable, or a text field that
    is not text is skipped with the reason and stores no record. `source_key` is "folder:" + the image
    paths joined by "|", so an edited metadata file adds only its new records."""
    existing = store.source_keys()
    batches = _Batches(store, report, batch_size)
    present, index = set(files), _file_index(files)
    entries = list(_metadata_entries(folder, root, files, report))
    if not any(posixpath.basename(rel) in METADATA_FILES for rel in files):
        report.skipped.append((str(folder), f"no metadata.jsonl or metadata.csv: a record of several images is a "
                                            f"line naming its files in {', '.join(image_columns)}"))
    for rel, rel_dir, number, entry in _progress(entries, progress, len(entries), "ingest"):
        where = f"{rel} line {number}"
        if not isinstance(entry, dict):
            report.skipped.append((where, "not an object with a field per image"))
            continue
        paths = []
        for col in image_columns:
            target = _inside(rel_dir, entry.get(col))
            if target is None:
                reason = (f"no {col!r} field naming an image file" if not entry.get(col)
                          else f"{col} {entry[col]!r} is outside the folder")
                report.skipped.append((where, reason))
                break
            paths.append(_find_file(target, present, index) or target)  # `café` in either Unicode form
        else:
            key = "folder:" + "|".join(paths)
            if key in existing:
                report.already_present += 1
                continue
            problem = _texts_missing(entry, text_columns)
            if problem is not None:
                report.skipped.append((where, problem))
                continue
            try:
                data = []
                for col, path in zip(image_columns, paths):
                    try:
                        if not os.path.lexists(folder / path):
                            raise ImageError("no such file in the folder")
                        data.append(_read_file(folder / path, root))
                    except ImageError as exc:
                        raise ImageError(f"{col} ({path}): {exc}") from None
                first, more = _save_images(data, image_columns, images_dir, max_pixels)
            except ImageError as exc:
                report.skipped.append((where, str(exc)))
                continue
            metadata = {str(k): v for k, v in entry.items() if k not in image_columns and k is not None}
            batches.add(NewRecord(key, first.path, first.sha256, first.width, first.height, len(data[0]), metadata,
                                  _suggestion(metadata, suggestion_column), more))
            existing.add(key)
    batches.flush()


# --- datasets ---------------------------------------------------------------

_DROP = object()


def _jsonable(value: Any) -> Any:
    """A JSON-friendly copy of a dataset value; _DROP for binary payloads."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _DROP
    if isinstance(value, dict):
        if "bytes" in value and "path" in value:  # another image/audio column: keep its name only
            return value.get("path")
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(value, (list, tuple)):
        return [v for v in (_jsonable(v) for v in value) if v is not _DROP]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _jsonable(value.tolist())
    if type(value).__module__.startswith("PIL."):
        return _DROP
    return str(value)


def _class_names(feature: Any) -> tuple[Any, bool] | None:
    """(ClassLabel, is_list) when a feature holds class ids, else None."""
    from datasets import ClassLabel
    if isinstance(feature, ClassLabel):
        return feature, False
    inner = getattr(feature, "feature", None)
    if isinstance(inner, ClassLabel):
        return inner, True
    if isinstance(feature, list) and len(feature) == 1 and isinstance(feature[0], ClassLabel):
        return feature[0], True
    return None


def _label_name(label: Any, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < label.num_classes:
        return label.int2str(value)
    return None if value == -1 else value


def _image_bytes(value: Any, token: str | bool | None) -> bytes:
    """The stored bytes of one image value, as they are."""
    path: str | None = None
    data: bytes | None = None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        path = value
    elif value is not None and type(value).__module__.startswith("PIL."):
        # already decoded (a dataset we could not cast): the one case that has to encode
        buf = io.BytesIO()
        value.save(buf, "PNG")
        data = buf.getvalue()
    if data is not None:
        return bytes(data)
    if not path:
        raise ImageError("no image (neither bytes nor a path)")
    from datasets.utils.file_utils import is_local_path, xopen
    if is_local_path(path):
        if not os.path.lexists(path):  # a dataset row naming a file that is not there (not one removed meanwhile)
            raise ImageError(f"no such file: {path}")
        return _read_file(Path(path), None)
    from datasets import DownloadConfig
    with xopen(path, "rb", download_config=DownloadConfig(token=token)) as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"too large: over {MAX_FILE_BYTES // 2**20} MB, the limit is {MAX_FILE_BYTES // 2**20} MB")
    return data


def _named_image_bytes(value: Any, column: str | None, token: str | bool | None) -> bytes:
    """`_image_bytes`, its ImageError naming the column when a record has several images."""
    try:
        return _image_bytes(value, token)
    except ImageError as exc:
        if column is None:
            raise
        raise ImageError(f"{column}: {exc}") from None


def _load(dataset: str, config: str | None, split: str, streaming: bool, token: str | bool | None,
          data_dir: str | None, data_files: Any, where: str | None = None) -> Any:
    """`where`: the dataset as the caller's person gave it, for the message (default: the settings)."""
    import datasets
    kwargs: dict[str, Any] = {"split": split, "streaming": streaming}
    if token is not None:
        kwargs["token"] = token
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    if data_files is not None:
        kwargs["data_files"] = data_files
    try:
        return datasets.load_dataset(dataset, config, **kwargs)
    except Exception as exc:  # not found, no access, no network, wrong config or split: all end here
        where = where or (f"SOURCE_DATASET={dataset!r}" + (f", SOURCE_CONFIG={config!r}" if config else "")
                          + f", SOURCE_SPLIT={split!r}")
        raise IngestError(f"cannot load the dataset ({where}): {type(exc).__name__}: {exc}. Check the "
                          f"name, config and split, and that HF_TOKEN can read it.") from exc


def ingest_dataset(store: StoreProtocol, dataset: Any, images_dir: Path, *, config: str | None = None,
                   split: str = "train", image_column: str = "image", suggestion_column: str | None = None,
                   streaming: bool = True, progress: bool = False, name: str | None = None,
                   token: str | bool | None = None, data_dir: str | None = None, data_files: Any = None,
                   batch_size: int = BATCH_SIZE, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                   image_columns: Sequence[str] = (), text_columns: Sequence[str] = (),
                   where: str | None = None) -> IngestReport:
    """Ingest a `datasets` dataset: a Hub/packaged name, or an already loaded Dataset/IterableDataset.

    A name goes through `datasets.load_dataset(dataset, config, split=split,
    streaming=streaming)`. The image column is cast to `Image(decode=False)`
    so its bytes are copied as stored (or the file at its `path`). Every other
    column goes to the record's metadata (class ids as their names, binary
    payloads left out); the suggestion comes from `suggestion_column`.
    `source_key` is f"hub:{name}:{config or 'default'}:{split}:{index}", where
    `name` defaults to the dataset name (or the loaded dataset's builder name).
    Images above `max_pixels` or MAX_FILE_BYTES are skipped with the reason.

    `image_columns` (records of several images) replaces `image_column`: every
    one is read like it, the first as the record's own image, the rest as its
    `more_images`; a row missing one, or whose `text_columns` are not text, is
    skipped with the reason. `where`: the dataset as the caller's person gave it (`--dataset X`), named
    when it cannot be loaded; default: the settings' names.
    """
    started = time.monotonic()
    images_dir = Path(images_dir)
    columns = tuple(image_columns) or (image_column,)
    if isinstance(dataset, str):
        name = name or dataset
        ds = _load(dataset, config, split, streaming, token, data_dir, data_files, where)
    else:
        ds = dataset
        info = getattr(ds, "info", None)
        name = name or getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or "local"
    report = IngestReport(source=f"dataset {name}" + (f" ({config})" if config else "") + f" [{split}]")
    features = getattr(ds, "features", None)
    if features is not None:
        for column in (*columns, *text_columns):
            if column not in features:
                setting = ("the task file's [record] images or texts (or --image-columns, --text-columns)"
                           if image_columns or text_columns else "SOURCE_IMAGE_COLUMN (or --image-column)")
                raise IngestError(f"the dataset {name} has no column {column!r}; its columns are "
                                  f"{', '.join(features)}. Set {setting}.")
        from datasets import Image
        for column in columns:
            if isinstance(features[column], Image) and features[column].decode:
                ds = ds.cast_column(column, Image(decode=False))
        if suggestion_column and suggestion_column not in features:
            report.warnings.append(f"the dataset has no column {suggestion_column!r}, so no record has a "
                                   f"suggestion; its columns are {', '.join(features)}")
        labels = {col: found for col, feat in features.items() if (found := _class_names(feat)) is not None}
    else:
        labels = {}
    prefix = f"hub:{name}:{config or 'default'}:{split}:"
    existing = store.source_keys()
    batches = _Batches(store, report, batch_size)
    total: int | None = len(ds) if hasattr(ds, "__len__") else None
    rows: Iterator[dict[str, Any]] = iter(ds)
    for index, row in enumerate(_progress(rows, progress, total, "ingest")):
        key = f"{prefix}{index}"
        if key in existing:
            report.already_present += 1
            continue
        item = f"{split}[{index}]"
        value = row.get(columns[0])
        origin = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
        if origin:
            item += f" ({posixpath.basename(origin.replace(chr(92), '/'))})"
        problem = _texts_missing(row, text_columns)
        if problem is not None:
            report.skipped.append((item, problem))
            continue
        try:
            data = [_named_image_bytes(row.get(col), col if image_columns else None, token) for col in columns]
        except ImageError as exc:
            report.skipped.append((item, str(exc)))
            continue
        except OSError as exc:
            report.skipped.append((item, f"cannot read the image ({exc.strerror or exc})"))
            continue
        try:  # an OSError here is about images_dir (full, read-only): that stops the ingest
            first, more = (_save_images(data, columns, images_dir, max_pixels) if image_columns
                           else (save_original(data[0], images_dir, max_pixels), ()))
        except ImageError as exc:
            report.skipped.append((item, str(exc)))
            continue
        metadata: dict[str, Any] = {}
        for col, value in row.items():
            if col in columns:
                continue
            if col in labels:
                label, is_list = labels[col]
                value = [_label_name(label, v) for v in value] if is_list and value is not None \
                    else _label_name(label, value)
            value = _jsonable(value)
            if value is not _DROP:
                metadata[col] = value
        batches.add(NewRecord(key, first.path, first.sha256, first.width, first.height, len(data[0]), metadata,
                              _suggestion(metadata, suggestion_column), more))
        existing.add(key)
    batches.flush()
    report.seconds = time.monotonic() - started
    return report


# --- sizes as shown -----------------------------------

SHOWN_SIZES = "image sizes as shown"  # the store's mark (StoreProtocol.mark) that the fix below was made


def fix_shown_sizes(store: StoreProtocol, images_dir: Path, batch_size: int = BATCH_SIZE) -> int:
    """Give records ingested before sizes were stored as shown the size of their first image as shown.

    Until then a record kept the size from its file's header; an image whose
    EXIF orientation turns it a quarter (5-8) is shown with the sides swapped
    (as the page, the export and a box drawn on it see it). Reads each
    original's header once (no decoding) and corrects the records whose stored
    size is the header's unturned one; idempotent. Images stored after this
    version (`describe`) are right already. Returns the records corrected.
    """
    fixed = 0
    ids = store.record_ids()
    for start in range(0, len(ids), batch_size):
        sizes = []
        for record in store.records(ids[start:start + batch_size]).values():
            try:
                width, height = shown_size(images_dir / record.image_path)
            except ImageError:
                continue  # a missing or unreadable original: its size stays as it is; the page says it is broken
            if (width, height) != (record.width, record.height) and (height, width) == (record.width, record.height):
                sizes.append((record.id, width, height))
        store.set_image_sizes(sizes)
        fixed += len(sizes)
    return fixed


# --- from the settings ---------------------------------

def ingest_from_settings(store: StoreProtocol, settings: Settings, task: TaskSpec,
                         progress: bool = False) -> IngestReport:
    """Ingest SOURCE_DATASET when set, else SOURCE_DIR, into `settings.images_dir`."""
    if settings.source_dataset:
        return ingest_dataset(store, settings.source_dataset, settings.images_dir, config=settings.source_config,
                              split=settings.source_split, image_column=settings.source_image_column,
                              suggestion_column=record_suggestion_column(task), token=settings.hf_token,
                              progress=progress, max_pixels=settings.max_image_pixels,
                              image_columns=task.image_columns, text_columns=task.text_columns)
    if settings.source_dir is None or not settings.source_dir.is_dir():
        raise IngestError(f"there is nothing to ingest: SOURCE_DIR={str(settings.source_dir or '')!r} is not a "
                          f"folder and SOURCE_DATASET is not set. Set one of them.")
    return ingest_folder(store, settings.source_dir, settings.images_dir,
                         suggestion_column=record_suggestion_column(task), progress=progress,
                         max_pixels=settings.max_image_pixels, image_columns=task.image_columns,
                         text_columns=task.text_columns)


__all__ = ["EmptySourceError", "IngestError", "IngestReport", "SHOWN_SIZES", "fix_shown_sizes",
           "ingest_dataset", "ingest_folder", "ingest_from_settings"]
