"""Parquet writers: rolling train files, the rejects file, and per-shard pool files.

Everything is written under a staging folder first and moved into place when the build finishes,
so a build folder never holds half of one run and half of another.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cftdata.rows import Reject, Row

REJECT_SCHEMA = pa.schema([("id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
                           ("detail", pa.string()), ("row", pa.string())])


def defer_pandas() -> None:
    """Keep pyarrow from importing pandas (~40 MB) for its optional checks; real pandas use still works.

    pyarrow asks "is pandas there?" the first time it builds or reads a table, importing it to find
    out, only to tell pandas objects from lists. Answered with pandas unimportable, the shim records
    "no pandas" and skips those checks; anything that needs pandas for real (``to_pandas``,
    ``from_pandas``) imports it then, as pyarrow retries the import on every such call.
    """
    import sys

    if "pandas" in sys.modules:
        return

    class _NoPandas:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> None:
            if name == "pandas":
                raise ModuleNotFoundError("pandas is deferred", name="pandas")

    sys.meta_path.insert(0, _NoPandas)  # type: ignore[arg-type]
    try:
        pa.array([], type=pa.string())
    finally:
        sys.meta_path.remove(_NoPandas)  # type: ignore[arg-type]


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One parquet file as a table. ``pq.read_table`` would load ``pyarrow.dataset`` (and pandas with it:
    ~90 MB of resident memory) to read a single local file."""
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def to_table(rows: list[Row], schema: pa.Schema) -> pa.Table:
    cols = {name: [r.get(name) for r in rows] for name in schema.names}
    return pa.Table.from_pydict(cols, schema=schema)


class RollingParquetWriter:
    """Appends row groups to ``<prefix>-NNNNN.parquet`` files of at most ``rows_per_file`` rows."""

    def __init__(self, folder: Path, prefix: str, schema: pa.Schema, rows_per_file: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.files: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0
        self.rows = 0
        folder.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        path = self.folder / f"{self.prefix}-{len(self.files):05d}.parquet"
        self.files.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._in_file = 0

    def write_rows(self, rows: list[Row]) -> None:
        start = 0
        while start < len(rows):
            if self._writer is None or self._in_file >= self.rows_per_file:
                self.close_file()
                self._open()
            take = min(len(rows) - start, self.rows_per_file - self._in_file)
            self._writer.write_table(to_table(rows[start:start + take], self.schema))
            self._in_file += take
            self.rows += take
            start += take

    def close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Close and rename files to the Hub convention ``<prefix>-00000-of-00003.parquet``."""
        self.close_file()
        if not self.files:  # an empty dataset still gets one (empty) file with the right schema
            self._open()
            self.close_file()
        n = len(self.files)
        final = []
        for i, path in enumerate(self.files):
            target = path.with_name(f"{self.prefix}-{i:05d}-of-{n:05d}.parquet")
            path.rename(target)
            final.append(target)
        self.files = final
        return final


class RejectWriter:
    """Every rejected row, with its stage, reason, detail and the row as JSON, in one parquet file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(path, REJECT_SCHEMA, compression="zstd")
        self.count = 0

    def write(self, rejects: list[Reject]) -> None:
        if rejects:
            self._writer.write_table(to_table([r.to_record() for r in rejects], REJECT_SCHEMA))
            self.count += len(rejects)

    def close(self) -> None:
        self._writer.close()
