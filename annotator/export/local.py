"""The export tables as files in a folder: records and responses as Parquet, JSONL and CSV.

What `python -m annotator export --out DIR` and the admin view's download
write; the same tables the Hub export pushes.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from annotator.boxes import DEFAULT_IOU
from annotator.task import TaskSpec
from annotator.export.format import RECORDS, RESPONSES
from annotator.export.gold import GOLD_CONFIG
from annotator.export.summary import ExportSummary
from annotator.export.tables import SHARD_ROWS, ExportProgress, build_tables
from annotator.export.writers import ParquetSink, TextSink, table_sink
from annotator.gold import GoldAnswer
from annotator.store_protocol import StoreProtocol


@dataclass(frozen=True)
class LocalExport:
    """What export_local wrote: file paths by (table, format), and the summary."""
    files: dict[tuple[str, str], Path]
    summary: ExportSummary
    seconds: float


def export_local(store: StoreProtocol, task: TaskSpec, out_dir: Path, images_dir: Path, *,
                 formats: Sequence[str] = ("parquet", "jsonl", "csv"), progress: ExportProgress | None = None,
                 shard_rows: int = SHARD_ROWS, box_iou: float = DEFAULT_IOU,
                 gold: Mapping[int, GoldAnswer] | None = None) -> LocalExport:
    """Write records.{parquet,jsonl,csv} and responses.{parquet,jsonl,csv} into `out_dir`, and with gold
    records (`gold`, runtime.load_gold) gold.{parquet,jsonl,csv}: their answers, left out of the other two.

    Parquet has the images embedded (bytes, a `datasets` Image feature); JSONL
    and CSV carry no image bytes, only `image_file` (the path under the images
    folder) and the record id. `box_iou`: BOX_IOU, for a boxes question's consensus. Files are written under temporary names and
    renamed when complete, so a reader never sees half a file.
    """
    started = time.monotonic()
    unknown = sorted(set(formats) - {"parquet", "jsonl", "csv"})
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; use parquet, jsonl or csv")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".export-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tables = build_tables(store, task, images_dir, shard_rows=shard_rows, progress=progress, box_iou=box_iou,
                              gold=gold)
        schemas = {RECORDS: tables.records_schema, RESPONSES: tables.responses_schema,
                   **({GOLD_CONFIG: tables.gold_schema} if gold else {})}
        parquet: dict[str, ParquetSink] = {}
        text: dict[tuple[str, str], TextSink] = {}
        for name, schema in schemas.items():
            if "parquet" in formats:
                parquet[name] = table_sink(work, name, schema, max_bytes=None)
            for kind in ("jsonl", "csv"):
                if kind in formats:
                    text[(name, kind)] = TextSink(work / f"{name}.{kind}", schema, kind)
        try:
            for shard in tables:
                for name, table in ((RECORDS, shard.records), (RESPONSES, shard.responses),
                                    *(((GOLD_CONFIG, shard.gold),) if shard.gold is not None else ())):
                    if name in parquet:
                        parquet[name].write(table)
                    for kind in ("jsonl", "csv"):
                        if (name, kind) in text:
                            text[(name, kind)].write(table)
        finally:
            produced = {name: sink.close() for name, sink in parquet.items()}
            for sink in text.values():
                sink.close()
        files: dict[tuple[str, str], Path] = {}
        for name, paths in produced.items():
            target = out_dir / f"{name}.parquet"
            os.replace(paths[0], target)
            files[(name, "parquet")] = target
        for (name, kind), sink in text.items():
            target = out_dir / f"{name}.{kind}"
            os.replace(sink.path, target)
            files[(name, kind)] = target
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return LocalExport(files, tables.summary, time.monotonic() - started)
