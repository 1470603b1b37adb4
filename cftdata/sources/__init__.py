"""Sources: read a corpus (local JSONL/JSON/parquet, or a Hub dataset) into canonical rows, in shards.

Readers yield ``(original_index, record)``; a record that cannot be read (bad JSON, not UTF-8) comes
as an exception object and becomes a reject. :func:`read_source` maps each record to the canonical
row (``id, source, question, reference_solution, reference_answer, response, meta``) with a stable
id = hash(source label, original index).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cftdata.errors import SourceError
from cftdata.recipe import Recipe, SourceSpec
from cftdata.registry import Registry
from cftdata.rows import Reject, Row, StageOutput, stable_id
from cftdata.sources.corpora import CORPORA, Corpus


class BadRecord(Exception):
    """A record that could not be read; becomes a reject of the source stage."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


Records = Iterator[tuple[int, "dict[str, Any] | BadRecord"]]

FILE_READERS: Registry = Registry("file format")


@FILE_READERS.register(".jsonl")
def read_jsonl(path: Path) -> Iterator[dict[str, Any] | BadRecord]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield BadRecord("not_utf8", f"{path}:{lineno}: {e}")
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                yield BadRecord("bad_json", f"{path}:{lineno}: {e.msg} at column {e.colno}")
                continue
            if not isinstance(rec, dict):
                yield BadRecord("bad_record", f"{path}:{lineno}: a JSON {type(rec).__name__}, not an object")
                continue
            yield rec


@FILE_READERS.register(".json")
def read_json(path: Path) -> Iterator[dict[str, Any] | BadRecord]:
    """A JSON array of objects (MetaMathQA's raw file), or JSON Lines under a .json name."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if not head.startswith(b"["):
        yield from read_jsonl(path)
        return
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"Source file {path} is not a valid UTF-8 JSON array: {e}.") from None
    for i, rec in enumerate(data):
        yield rec if isinstance(rec, dict) else BadRecord("bad_record", f"{path}[{i}]: not a JSON object")


@FILE_READERS.register(".parquet")
def read_parquet(path: Path) -> Iterator[dict[str, Any] | BadRecord]:
    import pyarrow.parquet as pq

    try:
        # No pre-buffering: pyarrow otherwise buffers whole column chunks and peak memory grows with the file.
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as e:
        raise SourceError(f"Source file {path} is not a readable parquet file: {e}.") from None
    done = 0
    batches = pf.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, ValueError) as e:  # a damaged page or compressed block, met mid-stream (ArrowInvalid)
            raise SourceError(f"Source file {path} is damaged after {done:,} readable rows: {e}. Replace the file "
                              "(or remove it from the source folder) and rerun: model answers received so far "
                              "are cached.") from None
        done += batch.num_rows
        yield from batch.to_pylist()


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in FILE_READERS:
            raise SourceError(
                f"Source file {path}: unsupported type {path.suffix!r}; use one of {', '.join(FILE_READERS.names())}."
            )
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FILE_READERS)
        if not files:
            raise SourceError(f"Source folder {path} holds no {', '.join(FILE_READERS.names())} files.")
        return files
    raise SourceError(f"Source path {path} does not exist (source.path in the recipe).")


def read_local(path: Path) -> Records:
    index = 0
    for file in _local_files(path):
        for rec in FILE_READERS.get(file.suffix)(file):
            yield index, rec
            index += 1


@contextlib.contextmanager
def quiet_hub_logs() -> Iterator[None]:
    """huggingface_hub logs every retry of an unreachable Hub as a warning; the build reports the outcome once."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def hub_num_rows(spec: SourceSpec, corpus: Corpus) -> int | None:
    """The split's row count from the Hub's dataset info, when it is published (no data download)."""
    try:
        import datasets

        with quiet_hub_logs():
            info = datasets.load_dataset_builder(spec.hub, spec.config or corpus.hub_config, revision=spec.revision).info
        return int(info.splits[spec.split].num_examples) if info.splits and spec.split in info.splits else None
    except Exception:
        return None


def read_hub(spec: SourceSpec, corpus: Corpus) -> Records:
    """``datasets.load_dataset`` (streaming by default, so large corpora never load whole)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a core dependency
        raise SourceError("Hub sources need the `datasets` package.") from None
    config = spec.config or corpus.hub_config
    streaming = True if spec.streaming is None else spec.streaming
    try:
        with quiet_hub_logs():
            ds = datasets.load_dataset(spec.hub, config, split=spec.split, streaming=streaming,
                                       revision=spec.revision)
    except Exception as e:
        raise SourceError(
            f"Could not load Hub dataset {spec.hub!r} (config {config!r}, split {spec.split!r}): "
            f"{type(e).__name__}: {str(e)[:300]}. Without network, download it elsewhere and point "
            "source.path at the files."
        ) from None
    yield from enumerate(ds)


def source_label(spec: SourceSpec) -> str:
    if spec.name:
        return spec.name
    if spec.corpus != "generic":
        return spec.corpus
    return spec.hub or Path(spec.path or "source").stem


def _text(value: Any, field: str, required: bool) -> tuple[str | None, str | None]:
    """(text, error reason) for a field that should hold text."""
    if value is None:
        return None, (f"missing_{field}" if required else None)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"bad_type_{field}"
    text = str(value)
    if required and not text.strip():
        return None, f"empty_{field}"
    return text, None


class SourceMapper:
    """Maps raw records to canonical rows for one recipe's source section."""

    def __init__(self, recipe: Recipe) -> None:
        spec = recipe.source
        self.spec = spec
        self.corpus = CORPORA.get(spec.corpus)
        c = self.corpus
        self.label = source_label(spec)
        self.f_question = spec.question or c.question
        self.f_response = spec.response or c.response
        self.f_solution = spec.reference_solution or c.reference_solution
        self.f_answer = spec.answer or c.answer
        self.meta_fields = tuple(spec.meta) if spec.meta is not None else c.meta
        self.max_chars = spec.max_chars

    def map(self, index: int, rec: dict[str, Any] | BadRecord) -> Row | Reject:
        rid = stable_id(self.label, index)
        if isinstance(rec, BadRecord):
            return Reject(rid, "source", rec.reason, rec.detail, {"index": index})
        if self.corpus.parse:
            rec = self.corpus.parse(rec)
        if self.f_question not in rec:
            return Reject(rid, "source", "missing_question",
                          f"record {index} has no field {self.f_question!r} (source.question); "
                          f"its fields: {', '.join(sorted(rec))[:300]}", {"index": index})
        question, err = _text(rec.get(self.f_question), "question", True)
        if err:
            return Reject(rid, "source", err, f"record {index}, field {self.f_question!r}", {"index": index})
        row: Row = {"id": rid, "source": self.label, "question": question}
        for key, field in (("response", self.f_response), ("reference_solution", self.f_solution),
                           ("reference_answer", self.f_answer)):
            value, err = _text(rec.get(field), key, False) if field else (None, None)
            if err:
                return Reject(rid, "source", err, f"record {index}, field {field!r}", {"index": index, **row})
            row[key] = value
        for key in ("question", "response", "reference_solution"):
            if row[key] is not None and len(row[key]) > self.max_chars:
                return Reject(rid, "source", f"too_long_{key}",
                              f"record {index}: {key} has {len(row[key])} characters (cap {self.max_chars})",
                              {"index": index, "id": rid})
        ans = row["reference_answer"]
        if ans is not None and ans.strip().lower() in self.corpus.no_answer_values:
            row["reference_answer"] = None
        elif ans is None and self.corpus.answer_rule and row["reference_solution"]:
            from cftdata.verify.extract import extract_answer

            row["reference_answer"] = extract_answer(row["reference_solution"], self.corpus.answer_rule)
        meta = {k: rec.get(k) for k in self.meta_fields if k in rec}
        meta["index"] = index
        if "critique" in rec and rec["critique"] is not None:
            row["critique"] = rec["critique"]
        row["meta"] = json.dumps(meta, ensure_ascii=False, default=str)
        return row


def preflight(recipe: Recipe) -> None:
    """Fail fast, before any model is loaded, on a missing source file or an unknown corpus."""
    CORPORA.get(recipe.source.corpus)
    if recipe.source.path:
        _local_files(recipe.resolve_path(recipe.source.path))


def iter_records(recipe: Recipe) -> Records:
    spec = recipe.source
    if spec.path:
        return read_local(recipe.resolve_path(spec.path))
    return read_hub(spec, CORPORA.get(spec.corpus))


def count_records(recipe: Recipe) -> int | None:
    """How many records the source holds: a cheap pass over local files, the Hub's info otherwise."""
    spec = recipe.source
    if spec.path:
        total = 0
        for file in _local_files(recipe.resolve_path(spec.path)):
            if file.suffix == ".parquet":
                import pyarrow.parquet as pq

                total += pq.ParquetFile(file).metadata.num_rows
            elif file.suffix == ".jsonl":
                with file.open("rb") as f:
                    total += sum(1 for line in f if line.strip())
            else:
                return None
        return total
    return hub_num_rows(spec, CORPORA.get(spec.corpus))


def index_sample(records: Records, total: int, n: int, seed: int) -> Records:
    """A uniform sample of ``n`` of ``total`` records chosen by index up front: memory holds the indices only."""
    import random

    keep = set(random.Random(seed).sample(range(total), min(n, total)))
    return ((i, rec) for i, rec in records if i in keep)


def reservoir_sample(records: Records, n: int, seed: int) -> Records:
    """A uniform sample of ``n`` records from a stream of unknown length (Algorithm R), in original order.
    Memory holds ``n`` records, never the corpus."""
    import random

    rng = random.Random(seed)
    reservoir: list[tuple[int, Any]] = []
    for seen, item in enumerate(records):
        if seen < n:
            reservoir.append(item)
        else:
            j = rng.randint(0, seen)
            if j < n:
                reservoir[j] = item
    reservoir.sort(key=lambda item: item[0])
    yield from reservoir


def read_source(recipe: Recipe, shard_size: int, limit: int | None = None,
                sample: int | None = None) -> Iterator[StageOutput]:
    """Canonical rows of the recipe's source, ``shard_size`` records per shard (rows + rejects).

    ``sample`` (or ``source.sample``) takes a seeded uniform sample first; ``limit`` then keeps the first N.
    """
    mapper = SourceMapper(recipe)
    limit = limit or recipe.source.limit
    sample = sample or recipe.source.sample
    records = iter_records(recipe)
    if sample:
        total = count_records(recipe)
        records = (index_sample(records, total, sample, recipe.run.seed) if total is not None
                   else reservoir_sample(records, sample, recipe.run.seed))
    rows: list[Row] = []
    rejects: list[Reject] = []
    for n, (index, rec) in enumerate(records):
        if limit is not None and n >= limit:
            break
        out = mapper.map(index, rec)
        (rejects if isinstance(out, Reject) else rows).append(out)
        if len(rows) + len(rejects) >= shard_size:
            yield StageOutput(rows, rejects)
            rows, rejects = [], []
    if rows or rejects:
        yield StageOutput(rows, rejects)
