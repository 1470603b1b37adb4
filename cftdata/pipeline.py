"""The build: source -> per-shard stages -> pool -> format -> files, with counts, rejects and a manifest.

It knows no backend, corpus or format by name: stages come from the :data:`STAGES` registry in
:data:`STAGE_ORDER`, formats from :data:`FORMATS`. Memory is bounded by the shard size: each shard
goes through every stage and is written to a pool file before the next one is read. A stage whose
model calls can start ahead (online and batch APIs: ``submits_ahead``) splits the map phase in passes,
so that every shard's calls are started before any shard waits for its answers (see :meth:`Build._map_phase`).

Every row is accounted for: for each stage, ``in = out + rejected`` (times ``n`` for a respond stage
that samples ``n`` responses per question), and the rejects file holds each rejected row with its
stage, reason and detail. Model answers live in the request cache, so rerunning a finished build makes
no model call, and rerunning an interrupted one only makes the calls that had not finished.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cftdata import __version__, killpoints
from cftdata.backends.cache import RequestCache, default_cache_dir
from cftdata.backends.caller import ModelLayer
from cftdata.buildfolder import commit, finish_publish
from cftdata.buildlock import BuildLock
from cftdata.executors import make_executor
from cftdata.formats import Formatter
from cftdata.interop import llamafactory_entry
from cftdata.progress import Reporter
from cftdata.recipe import Recipe
from cftdata.rows import CANONICAL_KEYS
from cftdata.sources import preflight, read_source
from cftdata.stages import STAGE_ORDER, STAGES
from cftdata.stages.base import BuildContext, ConfigRejectGuard, Stage
from cftdata.writer import RejectWriter, RollingParquetWriter, defer_pandas, read_parquet, to_table

CANONICAL_SCHEMA = {k: pa.string() for k in CANONICAL_KEYS}


@dataclass
class StageCount:
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"in": self.rows_in, "out": self.rows_out, "rejected": self.rejected,
                "seconds": round(self.seconds, 3)}


@dataclass
class BuildResult:
    """What a finished build produced (also written to manifest.json)."""

    output_dir: Path
    rows: int
    rejected: int
    manifest: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def enabled_stages(recipe: Recipe, ctx: BuildContext) -> list[Stage]:
    return [STAGES.get(name)(ctx) for name in STAGE_ORDER
            if name in STAGES and STAGES.get(name).enabled(recipe)]


def pool_schema(stages: list[Stage]) -> pa.Schema:
    cols: dict[str, pa.DataType] = dict(CANONICAL_SCHEMA)
    for st in stages:
        cols.update(st.columns)
    cols.setdefault("critique", pa.string())
    return pa.schema(list(cols.items()))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("datasets", "pyarrow", "polars", "openai", "anthropic", "llama-cpp-python", "math-verify",
                 "pydantic", "vllm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


USAGE_KEYS = ("requests", "cache_hits", "calls_made", "input_tokens", "output_tokens", "input_tokens_from_cache",
              "output_tokens_from_cache")


def model_usage(recipe: Recipe, summaries: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(usage, cost) per model role for the manifest: ``respond`` and ``critique`` for one generator and one
    teacher; ``respond:<label>`` and ``critique:<label>`` per model when ``respond`` / ``teacher`` is a list."""
    from cftdata.backends.pricing import cost_usd
    from cftdata.recipe import model_label

    usage, cost = {}, {}
    roles = [("respond", "generators", recipe.generators), ("critique", "teachers", recipe.teachers)]
    if recipe.refine is not None:
        roles.append(("refine", "refiners", [recipe.refine]))
    for stage, key, specs in roles:
        s = summaries.get(stage, {})
        by_label = {model_label(spec): spec for spec in specs}
        per_model = ([(f"{stage}:{label}", by_label[label], one) for label, one in s[key].items()] if key in s
                     else [(stage, specs[0], s)])
        for role, spec, one in per_model:
            if "input_tokens" not in one:
                continue
            usage[role] = {k: one[k] for k in USAGE_KEYS}
            cost[role] = {
                "this_run_usd": cost_usd(spec, one["input_tokens"], one["output_tokens"]),
                "total_usd": cost_usd(spec, one["input_tokens"] + one["input_tokens_from_cache"],
                                      one["output_tokens"] + one["output_tokens_from_cache"]),
            }
    return usage, cost


class Build:
    """One run of a recipe. Use :func:`build` unless you need the pieces."""

    def __init__(self, recipe: Recipe, *, limit: int | None = None, sample: int | None = None,
                 reporter: Reporter | None = None, recipe_file: str | None = None,
                 overrides: tuple[str, ...] = (), preflight: bool = True) -> None:
        self.recipe = recipe
        #: Each model endpoint's first paid request goes alone; a systemic failure of it stops the build.
        self.preflight = preflight
        self.limit = limit
        self.sample = sample
        self.reporter = reporter or Reporter(quiet=True)
        self.recipe_file = recipe_file
        self.overrides = tuple(overrides)
        self.out_dir = recipe.output_dir
        self.staging = self.out_dir / ".staging"
        self.counts: dict[str, StageCount] = {}
        self.reject_reasons: Counter = Counter()
        self.peak_rss_mb: dict[str, float] = {}
        #: Set when this run resumes an interrupted one: what it found (see :meth:`_resume_info`).
        self.resumed: dict[str, Any] | None = None
        self._cache: RequestCache | None = None
        self.guard = ConfigRejectGuard()

    def _count(self, name: str) -> StageCount:
        return self.counts.setdefault(name, StageCount())

    def run(self) -> BuildResult:
        """Build under the output folder's lock (one build per folder: a second one stops at once)."""
        with BuildLock(self.out_dir, self.recipe_file) as lock:
            self.resumed = self._resume_info(lock)
            return self._run()

    def _resume_info(self, lock: BuildLock) -> dict[str, Any] | None:
        """Repair a publish a kill interrupted; describe the interrupted build this run resumes (or None)."""
        finish_publish(self.out_dir)
        progress = self.staging / "progress.json"
        if not self.staging.exists() and lock.previous is None:
            return None
        info: dict[str, Any] = {"previous_pid": (lock.previous or {}).get("pid")}
        try:
            info["shards_done"] = json.loads(progress.read_text()).get("shards_done", 0)
        except (OSError, ValueError):
            info["shards_done"] = 0
        return info

    def _run(self) -> BuildResult:
        recipe = self.recipe
        t_start = time.time()
        defer_pandas()
        preflight(recipe)
        recipe.check_output_dir()
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        cache_dir = self._cache_dir()
        cache = RequestCache.open(cache_dir) if recipe.cache.enabled else None
        self._cache = cache
        executor = make_executor(recipe.run)
        models = ModelLayer(cache, place=executor.place, preflight=self.preflight)
        ctx = BuildContext(recipe=recipe, models=models, executor=executor,
                           reporter=self.reporter, output_dir=self.out_dir)
        stages: list[Stage] = []
        rejects = RejectWriter(self.staging / "rejects.parquet")
        self.reporter.start()
        try:
            stages = enabled_stages(recipe, ctx)
            schema = pool_schema(stages)
            pool_files = self._map_phase(stages, schema, rejects)
            self.peak_rss_mb["map"] = peak_rss_mb()
            keep, select_summary = self._select_phase(pool_files, rejects)
            killpoints.reached("select")
            self.peak_rss_mb["select"] = peak_rss_mb()
            files, n_out = self._write_phase(pool_files, schema, keep, rejects)
            self.peak_rss_mb["write"] = peak_rss_mb()
            rejects.close()
            summaries = {st.name: st.summary() for st in stages}
            if select_summary:
                summaries["select"] = select_summary
            summaries["output"] = self._output_stats(pool_files, keep)
            manifest = self._manifest(summaries, files, n_out, rejects.count, time.time() - t_start, cache_dir)
            self._publish(files, manifest)
        finally:
            for st in stages:
                st.close()
            executor.close()
            if cache is not None:
                cache.close()
            self.reporter.stop()
        final_files = [self.out_dir / "data" / f.name for f in files]
        return BuildResult(self.out_dir, n_out, rejects.count, manifest, final_files)

    # -- phases ----------------------------------------------------------------------------------

    def _map_phase(self, stages: list[Stage], schema: pa.Schema, rejects: RejectWriter) -> list[Path]:
        """Every shard through every stage, into pool files.

        A stage that ``submits_ahead`` (model calls on an online or batch API) cuts the stages into
        passes: each pass runs its stages over every shard, hands each shard's rows to the next pass's
        first stage with ``submit`` (which starts the calls and returns; an online backend blocks once
        a bounded number is unfinished) and spills them to ``.staging/spill-<pass>/``; the next pass
        reads them back and collects the answers. So a batch build waits once, for batches that were
        all submitted together, and an online build never lets its pipe drain between shards.
        Without such a stage, one pass goes from the source straight to the pool.
        """
        pool_dir = self.staging / "pool"
        pool_dir.mkdir()
        pool_files = []
        cuts = [i for i, st in enumerate(stages) if st.submits_ahead]
        bounds = sorted({0, *cuts, len(stages)})
        passes = [stages[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        if cuts and cuts[0] == 0:
            passes.insert(0, [])  # the first stage submits ahead: a pass that only submits the source rows
        for n, stages_of_pass in enumerate(passes):
            following = passes[n + 1][0] if n + 1 < len(passes) else None
            shards = self._source_shards(self._shard_size(stages), rejects) if n == 0 else self._spilled(n - 1)
            for shard_no, rows in shards:
                rows = self._run_stages(stages_of_pass, rows, rejects)
                if following is None:
                    path = pool_dir / f"pool-{shard_no:05d}.parquet"
                    pq.write_table(to_table(rows, schema), path)
                    pool_files.append(path)
                    self._write_progress(shard_no + 1)
                else:
                    following.submit(rows)
                    spill = self.staging / f"spill-{n}"
                    spill.mkdir(exist_ok=True)
                    pq.write_table(to_table(rows, schema), spill / f"shard-{shard_no:05d}.parquet")
            if n > 0:
                shutil.rmtree(self.staging / f"spill-{n - 1}")
        return pool_files

    def _source_shards(self, shard_size: int, rejects: RejectWriter):
        """(shard number, rows) from the source, counted, its unreadable records rejected."""
        for shard_no, shard in enumerate(read_source(self.recipe, shard_size, self.limit, self.sample)):
            killpoints.reached("source")
            yield shard_no, self._count_source(shard, rejects)

    def _spilled(self, n: int):
        """(shard number, rows) spilled by pass ``n``, in order."""
        for path in sorted((self.staging / f"spill-{n}").glob("shard-*.parquet")):
            yield int(path.stem.split("-")[1]), read_parquet(path).to_pylist()

    def _shard_size(self, stages: list[Stage]) -> int:
        """``run.shard_size``, raised to what the stages need at least."""
        shard_size = self.recipe.run.shard_size
        floor = max([st.min_shard_rows for st in stages if st.min_shard_rows] or [0])
        if floor > shard_size:
            self.reporter.info(f"shard size raised from {shard_size} to {floor} for a stage that asks for it")
            shard_size = floor
        return shard_size

    def _count_source(self, shard: Any, rejects: RejectWriter | None) -> list[dict]:
        """Count a source shard and reject its unreadable records; return its rows."""
        src = self._count("source")
        src.rows_in += len(shard.rows) + len(shard.rejects)
        src.rows_out += len(shard.rows)
        src.rejected += len(shard.rejects)
        self._reject(shard.rejects, rejects)
        self.reporter.advance("source", len(shard.rows) + len(shard.rejects))
        return shard.rows

    def _through_stages(self, stages: list[Stage], shard: Any, rejects: RejectWriter | None) -> list[dict]:
        """One source shard through every stage, counted; returns the rows that came out of the last one."""
        return self._run_stages(stages, self._count_source(shard, rejects), rejects)

    def _run_stages(self, stages: list[Stage], rows: list[dict], rejects: RejectWriter | None) -> list[dict]:
        for st in stages:
            c = self._count(st.name)
            t0 = time.monotonic()
            out = st.process(rows)
            c.seconds += time.monotonic() - t0
            c.rows_in += len(rows) * st.fanout
            c.rows_out += len(out.rows)
            c.rejected += len(out.rejects)
            self.guard.observe(st, len(rows) * st.fanout, out)
            self._reject(out.rejects, rejects)
            rows = out.rows
            if rejects is not None:
                killpoints.reached(st.name)
        return rows

    def estimate(self) -> dict[str, Any]:
        """A dry run: the real stages over the real source rows, with callers that estimate instead of calling
        (answers already in the request cache are used). Nothing is written, no API key is needed, and the
        executor is local (where work runs changes no result). Returns counts per stage, and calls, tokens and
        dollars per model stage."""
        recipe = self.recipe
        preflight(recipe)
        recipe.check_output_dir()
        cache = RequestCache.open_readonly(self._cache_dir()) if recipe.cache.enabled else None
        executor = make_executor(recipe.run, dry_run=True)
        models = ModelLayer(cache, estimate=True)
        ctx = BuildContext(recipe=recipe, models=models, executor=executor, reporter=self.reporter,
                           output_dir=self.out_dir)
        stages: list[Stage] = []
        try:
            stages = enabled_stages(recipe, ctx)
            for shard in read_source(recipe, self._shard_size(stages), self.limit, self.sample):
                self._through_stages(stages, shard, None)
            summaries = {st.name: st.summary() for st in stages}
        finally:
            for st in stages:
                st.close()
            executor.close()
            if cache is not None:
                cache.close()
        return {"counts": {k: v.as_dict() for k, v in self.counts.items()},
                "rejects_by_reason": dict(sorted(self.reject_reasons.items())), "stages": summaries,
                "models": models.opened, "missing_keys": models.missing_keys, "layer": models}

    def _cache_dir(self) -> Path:
        return Path(self.recipe.cache.dir).expanduser() if self.recipe.cache.dir else default_cache_dir()

    def _select_phase(self, pool_files: list[Path], rejects: RejectWriter) -> tuple[Any, dict]:
        """Choose the final subset (``select``): a boolean mask over pool positions. Every row not chosen is
        a ``select:not_selected`` reject."""
        if self.recipe.select is None:
            return None, {}
        from cftdata.rows import Reject
        from cftdata.stages.select import select_mask

        t0 = time.monotonic()
        mask, summary = select_mask(self.recipe, pool_files)
        c = self._count("select")
        offset = 0
        for path in pool_files:
            ids = read_parquet(path, ["id"]).column("id").to_pylist()
            keep = mask[offset:offset + len(ids)]
            dropped = [Reject(i, "select", "not_selected", summary["strategy"])
                       for i, k in zip(ids, keep, strict=True) if not k]
            offset += len(ids)
            c.rows_in += len(ids)
            c.rows_out += len(ids) - len(dropped)
            c.rejected += len(dropped)
            self._reject(dropped, rejects)
        c.seconds += time.monotonic() - t0
        return mask, summary

    @staticmethod
    def _output_stats(pool_files: list[Path], keep: Any) -> dict[str, Any]:
        """Critique length quantiles (characters) of the rows written (``keep``: the select mask or None)."""
        import pyarrow.compute as pc

        if not pool_files:
            return {}
        lens = pa.chunked_array([pc.utf8_length(read_parquet(f, ["critique"]).column("critique"))
                                 for f in pool_files], type=pa.int32())
        if keep is not None:
            lens = lens.filter(pa.array(keep, type=pa.bool_()))
        lens = lens.drop_null()
        if len(lens) == 0:
            return {}
        qs = (("min", 0), ("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("max", 1))
        values = pc.quantile(lens, q=[v for _, v in qs], interpolation="nearest").to_pylist()
        q = {name: int(v) for (name, _), v in zip(qs, values, strict=True)}
        return {"critique_chars": {**q, "mean": round(pc.mean(lens).as_py(), 1)}}

    def _write_phase(self, pool_files: list[Path], schema: pa.Schema,
                     keep: Any = None, rejects: RejectWriter | None = None) -> tuple[list[Path], int]:
        out = self.recipe.output
        # Columns of quality stages (verify_*, agreement...) travel with the provenance columns.
        extra = {f.name: f.type for f in schema if f.name.startswith(("verify_", "contamination", "refine"))}
        if self.recipe.fan_out:  # several generators or teachers: which response a critique is about
            extra["response_id"] = pa.string()
        fmt = Formatter(out.format, provenance=out.provenance, system_prompt=out.system_prompt,
                        extra_columns=extra)
        writer = RollingParquetWriter(self.staging / "data", "train", fmt.schema, out.rows_per_file)
        c = self._count("format")
        offset = 0
        seen: set[str] = set()
        for path in pool_files:
            t0 = time.monotonic()
            rows = read_parquet(path).to_pylist()
            if keep is not None:
                mask = keep[offset:offset + len(rows)]
                offset += len(rows)
                rows = [r for r, k in zip(rows, mask, strict=True) if k]
            c.rows_in += len(rows)
            rows = self._writable(fmt, rows, rejects, seen)
            writer.write_rows([fmt.render(r) for r in rows])
            c.rows_out += len(rows)
            c.seconds += time.monotonic() - t0
            killpoints.reached("write")
        return writer.close(), writer.rows

    def _writable(self, fmt: Formatter, rows: list[dict], rejects: RejectWriter | None, seen: set[str]) -> list[dict]:
        """The rows the format can write; the others are ``format:<reason>`` rejects: rows it refuses (an RL
        prompt without a reference answer...) and, for a format written once per question, its later rows."""
        spec = fmt.fmt
        if spec.one_per is None and spec.refuse is None:
            return rows
        from cftdata.rows import Reject

        out, dropped = [], []
        for r in rows:
            problem = spec.refuse(r) if spec.refuse else None
            key = (r.get(spec.one_per) or r["id"]) if spec.one_per else None
            if problem is None and key is not None and key in seen:
                problem = "same_prompt", f"output.format {spec.name} writes one row per {spec.one_per}"
            if problem is not None:
                dropped.append(Reject(r["id"], "format", problem[0], problem[1], r))
                continue
            if key is not None:
                seen.add(key)
            out.append(r)
        self._count("format").rejected += len(dropped)
        self._reject(dropped, rejects)
        return out

    def _reject(self, rejects, writer: RejectWriter | None) -> None:
        """Count rejects by reason and write them (a dry run only counts)."""
        for r in rejects:
            self.reject_reasons[f"{r.stage}:{r.reason}"] += 1
        if writer is not None:
            writer.write(rejects)

    def _write_progress(self, shards_done: int) -> None:
        """``.staging/progress.json``: what ``cftdata status`` reads for a running or interrupted build."""
        import os

        state = {"status": "running", "shards_done": shards_done,
                 "counts": {k: v.as_dict() for k, v in self.counts.items()}, "updated": time.time(),
                 "pid": os.getpid(), "recipe_file": self.recipe_file, "overrides": list(self.overrides),
                 "limit": self.limit, "sample": self.sample, "shard_size": self.recipe.run.shard_size,
                 "recipe": self.recipe.resolved_dict()}
        tmp = self.staging / "progress.json.tmp"  # replaced whole: a reader or a kill never sees half of it
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.staging / "progress.json")

    # -- manifest and publishing -------------------------------------------------------------------

    def _manifest(self, summaries: dict, files: list[Path], n_out: int, n_rej: int, seconds: float,
                  cache_dir: Path) -> dict[str, Any]:
        usage, cost = model_usage(self.recipe, summaries)
        return {
            "cftdata_version": __version__,
            "status": "complete",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "recipe_file": self.recipe_file,
            "overrides": list(self.overrides),
            "limit": self.limit,
            "sample": self.sample,
            "recipe": self.recipe.resolved_dict(),
            "versions": package_versions(),
            "counts": {k: v.as_dict() for k, v in self.counts.items()},
            "rows_out": n_out,
            "rejected": n_rej,
            "rejects_by_reason": dict(sorted(self.reject_reasons.items())),
            "stages": summaries,
            "usage": usage,
            "cost": cost,
            "resume": self._resume_summary(usage),
            "seconds": round(seconds, 2),
            "peak_rss_mb_after": self.peak_rss_mb,
            "cache": str(cache_dir) if self.recipe.cache.enabled else None,
            "files": ["data/" + f.name for f in files] + ["rejects.parquet"],
            "prompts": self._prompts(),
        }

    def _resume_summary(self, usage: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Whether this run resumed an interrupted build, the answers it took from the cache, the requests it
        sent, and how many of those an earlier run had sent without an answer stored (in flight when it was
        killed, or failed; online backends mark sends)."""
        cache = self._cache
        return {"resumed": self.resumed is not None,
                "answers_from_cache": sum(u.get("cache_hits", 0) for u in usage.values()),
                "sent": sum(u.get("calls_made", 0) for u in usage.values()),
                "resent": cache.resent if cache is not None else 0}

    def _prompts(self) -> dict[str, dict[str, str]]:
        """The exact prompt templates used (custom template files included), for the card."""
        from cftdata.prompts import CRITIQUE_PROMPTS, SOLVE_PROMPTS, resolve_prompt
        from cftdata.recipe import model_label

        out = {}
        r = self.recipe
        for spec in r.teachers:
            if spec.backend not in ("existing", "none"):
                t = resolve_prompt(spec.prompt, CRITIQUE_PROMPTS, r.resolve_path)
                role = f"teacher:{model_label(spec)}" if isinstance(r.teacher, list) else "teacher"
                out[role] = {"name": spec.prompt, "system": t.system, "user": t.user}
        for spec in r.generators:
            if spec.mode == "generate":
                t = resolve_prompt(spec.prompt, SOLVE_PROMPTS, r.resolve_path)
                role = f"respond:{model_label(spec)}" if isinstance(r.respond, list) else "respond"
                out[role] = {"name": spec.prompt, "system": t.system, "user": t.user}
        if r.refine is not None:
            from cftdata.prompts.refine import REFINE_PROMPTS

            t = resolve_prompt(r.refine.prompt, REFINE_PROMPTS, r.resolve_path)
            out["refine"] = {"name": r.refine.prompt, "system": t.system, "user": t.user}
        return out

    def _publish(self, files: list[Path], manifest: dict[str, Any]) -> None:
        """Write manifest and card into staging, then swap staging's content into the build folder
        (:func:`cftdata.buildfolder.commit`)."""
        from cftdata.card import render_card

        (self.staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        (self.staging / "README.md").write_text(render_card(manifest), encoding="utf-8")
        names = ["data", "rejects.parquet", "manifest.json", "README.md"]
        entry = llamafactory_entry(self.recipe.name, self.recipe.output.format)
        if entry is not None:
            (self.staging / "dataset_info.json").write_text(json.dumps(entry, indent=2))
            names.append("dataset_info.json")
        shutil.rmtree(self.staging / "pool")
        (self.staging / "progress.json").unlink(missing_ok=True)
        killpoints.reached("card")
        commit(self.out_dir, names)  # staging replaces the previous build (a kill anywhere is repaired)
        (self.out_dir / "progress.json").unlink(missing_ok=True)


def build(recipe: Recipe, *, limit: int | None = None, sample: int | None = None, reporter: Reporter | None = None,
          recipe_file: str | None = None, overrides: tuple[str, ...] = (), preflight: bool = True) -> BuildResult:
    """Run a recipe end to end and return what it wrote (see :class:`BuildResult`). ``preflight``: each model
    endpoint's first paid request goes alone, and a systemic failure of it stops the build after that one call
    (``--no-preflight`` turns it off; the circuit breaker still stops a broken endpoint within a few calls)."""
    return Build(recipe, limit=limit, sample=sample, reporter=reporter, recipe_file=recipe_file,
                 overrides=overrides, preflight=preflight).run()
