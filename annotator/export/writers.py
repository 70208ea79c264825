"""Writers for the export tables' shards: Parquet (images embedded), JSONL and CSV (without image bytes).

Each sink takes the shards of one table as they are built, so no table is
ever held whole in memory.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotator.export.format import BYTE_COLUMNS, IMAGE

IMAGE_ROW_GROUP = 100  # rows per parquet row group in `records` (what `datasets` uses for images)


class ParquetSink:
    """Writes shards of one table to parquet files, starting a new file past `max_bytes`.

    Files are named `<stem>-NNNNN.parquet` while written; `close()` returns
    them. A table without rows gets one empty file (the config exists) unless
    `empty_file` is False (a ready-to-train config: an empty one breaks
    `load_dataset`, so it is left out).
    """

    def __init__(self, folder: Path, stem: str, schema: pa.Schema, *, max_bytes: int | None,
                 row_group: int | None, empty_file: bool = True) -> None:
        self.folder, self.stem, self.schema = folder, stem, schema
        self.max_bytes, self.row_group, self.empty_file = max_bytes, row_group, empty_file
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            path = self.folder / f"{self.stem}-{len(self.paths):05d}.parquet"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, self.schema)
        self._writer.write_table(table, row_group_size=self.row_group or table.num_rows)
        if self.max_bytes is not None and self.paths[-1].stat().st_size >= self.max_bytes:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.paths and self.empty_file:
            path = self.folder / f"{self.stem}-00000.parquet"
            pq.write_table(self.schema.empty_table(), path)
            self.paths.append(path)
        return self.paths


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class TextSink:
    """JSONL or CSV (`kind`) of one table without image bytes (lists and structs as JSON in CSV)."""

    def __init__(self, path: Path, schema: pa.Schema, kind: str) -> None:
        columns = [c for c in schema.names if c not in BYTE_COLUMNS]
        self.path, self.columns, self.kind = path, columns, kind
        self._nested = [pa.types.is_nested(schema.field(c).type) for c in columns]
        self._file = open(path, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file) if kind == "csv" else None
        if self._csv is not None:
            self._csv.writerow(columns)

    def write(self, table: pa.Table) -> None:
        rows = table.select(self.columns).to_pylist()
        if self._csv is None:
            self._file.writelines(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n" for row in rows)
            return
        for row in rows:
            self._csv.writerow([
                json.dumps(v, ensure_ascii=False, default=_json_default) if nested and v is not None
                else v.isoformat() if isinstance(v, datetime) else v
                for v, nested in zip(row.values(), self._nested)])

    def close(self) -> None:
        self._file.close()



def table_sink(folder: Path, stem: str, schema: pa.Schema, *, max_bytes: int | None,
               empty_file: bool = True) -> ParquetSink:
    """A ParquetSink for an export table: a table with images in row groups of IMAGE_ROW_GROUP rows."""
    return ParquetSink(folder, stem, schema, max_bytes=max_bytes,
                       row_group=IMAGE_ROW_GROUP if IMAGE in schema.names else None, empty_file=empty_file)
