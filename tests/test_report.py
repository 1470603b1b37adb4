"""``cftdata inspect`` / ``diff`` / ``status`` on real builds.

The build folders are made by the real pipeline (``recipes/quickstart.yaml`` with overrides): a local source,
verify / dedup / decontamination against the real MATH-500, and a teacher on the loopback fault server whose
answers are scripted critiques (``tests/servers/scripted_critic.py``), so the manifests, counts, usage and costs
are what a build writes. Interrupted builds (``.staging/`` and ``progress.json`` as the pipeline leaves them) are
made by hand. One slow test makes a real build with the embedded model. The browser test opens the report in headless Chromium
over the DevTools protocol (a small stdlib websocket client below), checks for console errors and that
every chart rendered, and saves a full-page screenshot (``tmp_path``; copied to
``$CFTDATA_TEST_ARTIFACTS`` when set).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cftdata.cli import _Group
from cftdata.cli import main as cli_main
from cftdata.pipeline import build
from cftdata.recipe import load_recipe
from cftdata.report.commands import COMMANDS
from tests.conftest import ROOT, SHARED_DATA, run_cli
from tests.servers.fault_server import serve
from tests.servers.scripted_critic import critique_for

EVIL_Q = "What is 1 < 2? <script>alert('q')</script> & </pre><b>bold</b>"
CHARTS = {"stages", "critique_length", "response_length", "verdict_by_source", "rejects"}
KEY_ENV = "CFTDATA_REPORT_TEST_KEY"
#: The final answer each response ends with, by i % 5: verify gives correct, incorrect, correct, unverifiable,
#: incorrect.
ENDINGS = (lambda i: f" \\boxed{{{2 * i}}}", lambda i: f" \\boxed{{{2 * i + 1}}}", lambda i: f" \\boxed{{{2 * i}}}",
           lambda i: "", lambda i: f" \\boxed{{{2 * i + 3}}}")


# -- real builds -------------------------------------------------------------------------------


def _cli() -> click.Group:
    """The commands on a group with the real CLI's error handling (CftdataError -> one line, exit 2)."""
    group = _Group(name="cftdata")
    for cmd in COMMANDS:
        group.add_command(cmd)
    return group


def _rows(n: int) -> list[dict]:
    """The source rows that are kept: question i, a response whose first line repeats the input separator,
    and the critique the scripted teacher writes for question i."""
    rows = []
    for i in range(n):
        rows.append({
            "question": EVIL_Q if i == 0 else f"Question {i}: compute {i} + {i}. <script>alert('q')</script>",
            "response": f"Step 1: add.\n\nSolution:\nso {i} + {i} = {2 * i}\n" + "x" * (i * 7) + ENDINGS[i % 5](i),
            "answer": str(2 * i), "critique": critique_for(i),
        })
    return rows


def make_build(root: Path, base_url: str, cache_dir: Path, *, n: int = 40, fmt: str = "alpaca",
               teacher_model: str = "gpt-4o-mini", quality: bool = True) -> Path:
    """A real ``cftdata build`` of ``recipes/quickstart.yaml`` with overrides: ``n`` kept rows from a local
    source, critiqued by the scripted teacher on the loopback fault server (``base_url``), plus rows that
    become rejects: 2 truncated critiques, and with ``quality`` 3 duplicates and 1 contaminated question
    (decontamination against the real MATH-500) with verify on. Shards of 7 rows, files of 15 rows."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{k: r[k] for k in ("question", "response", "answer")} for r in _rows(n)]
    if quality:
        rows += [dict(rows[k]) for k in (1, 2, 3)]
        math500 = json.loads((SHARED_DATA / "math500" / "test.jsonl").read_text().splitlines()[7])["problem"]
        rows.append({"question": "Here is a problem. " + math500, "response": "\\boxed{1}", "answer": "1"})
    rows += [{"question": f"Question {n + k}: a long one. [[length]]", "response": "so \\boxed{0}", "answer": "0"}
             for k in range(2)]
    src = root.parent / f"{root.name}-source.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    overrides = [f"output.dir={root}", f"output.format={fmt}", "output.rows_per_file=15", "run.shard_size=7",
                 "respond.mode=existing", f"source.path={src}", "source.question=question",
                 "source.response=response", "source.answer=answer", "teacher.backend=openai",
                 f"teacher.model={teacher_model}", f"teacher.base_url={base_url}", f"teacher.api_key_env={KEY_ENV}",
                 f"cache.dir={cache_dir}"]
    if not quality:  # the quickstart's own verify and agreement sections off
        overrides += ["verify=null", "agreement=null"]
    if quality:
        overrides += ["verify={answer_rule: boxed, workers: 1}", "agreement={}", "dedup={}",
                      f"decontaminate={{data_dir: {SHARED_DATA}, benchmarks: [math500]}}"]
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", overrides)
    res = build(recipe, recipe_file="recipes/quickstart.yaml", overrides=tuple(overrides))
    assert res.rows == n and res.rejected == len(rows) - n, res.manifest["rejects_by_reason"]
    return root


def manifest(build_dir: Path) -> dict:
    return json.loads((build_dir / "manifest.json").read_text())


def make_cache(directory: Path, answers: dict[str, int]) -> Path:
    """A request cache (same table as cftdata.backends.cache) holding ``answers[model]`` rows per model."""
    directory.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(directory / "requests.sqlite")
    db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, namespace TEXT, model TEXT, "
               "result TEXT NOT NULL, created REAL)")
    for model, k in answers.items():
        db.executemany("INSERT INTO results VALUES (?,?,?,?,?)",
                       [(f"{model}-{i}", "ns", model, "{}", 0.0) for i in range(k)])
    db.commit()
    db.close()
    return directory


def make_staging(root: Path, progress_extra: dict | None = None) -> Path:
    """An interrupted build: ``.staging/`` with pool files and progress.json as pipeline.py writes them."""
    staging = root / ".staging"
    (staging / "pool").mkdir(parents=True)
    counts = {"source": {"in": 4, "out": 4, "rejected": 0, "seconds": 0.0},
              "respond": {"in": 4, "out": 3, "rejected": 1, "seconds": 20.0},
              "critique": {"in": 3, "out": 3, "rejected": 0, "seconds": 20.0},
              "verdict": {"in": 3, "out": 3, "rejected": 0, "seconds": 0.0}}
    for shard in range(2):
        t = pa.table({"id": [f"{shard}-{i}" for i in range(2 - shard)],
                      "question": ["q"] * (2 - shard), "critique": ["c"] * (2 - shard),
                      "response_input_tokens": pa.array([100] * (2 - shard), pa.int64()),
                      "response_output_tokens": pa.array([200] * (2 - shard), pa.int64()),
                      "critique_input_tokens": pa.array([1000] * (2 - shard), pa.int64()),
                      "critique_output_tokens": pa.array([500] * (2 - shard), pa.int64())})
        pq.write_table(t, staging / "pool" / f"pool-{shard:05d}.parquet")
    (staging / "rejects.parquet").write_bytes(b"PAR1 half-written")  # open ParquetWriter: no footer yet
    progress = {"status": "running", "shards_done": 2, "counts": counts, "updated": time.time() - 600}
    progress.update(progress_extra or {})
    (staging / "progress.json").write_text(json.dumps(progress, indent=1))
    return staging


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """Two real builds sharing one request cache: ``a`` (40 rows, verify/dedup/decontamination, teacher
    gpt-4o-mini) and ``b`` (25 rows, messages format, teacher gpt-4o, no quality stages)."""
    if not (SHARED_DATA / "math500" / "test.jsonl").is_file():
        pytest.skip(f"real public data not found at {SHARED_DATA} (it sits beside the checkout in CI)")
    base = tmp_path_factory.mktemp("builds")
    cache = base / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, "sk-report-test")
        for name in list(os.environ):
            if name.lower().endswith("_proxy"):
                mp.delenv(name)
        with serve(plugins=["tests.servers.scripted_critic:register"]) as (url, _stats):
            return {
                "a": make_build(base / "a", url, cache),
                "b": make_build(base / "b", url, cache, n=25, fmt="messages", teacher_model="gpt-4o", quality=False),
                "cache": cache,
            }


# -- inspect ---------------------------------------------------------------------------------


def test_inspect_writes_a_self_contained_page(builds, tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(_cli(), ["inspect", str(builds["a"]), "--out", str(out), "--samples", "4"])
    assert res.exit_code == 0, res.output
    assert "index.html" in res.output
    html = (out / "index.html").read_text(encoding="utf-8")
    pngs = {p.stem for p in out.glob("*.png")}
    assert pngs == CHARTS
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # self-contained: charts inline, nothing fetched, no script at all
    assert html.count('src="data:image/png;base64,') == len(CHARTS)
    for bad in ("<script", "<link", "@import", "url("):
        assert bad not in html.lower(), bad
    # nothing fetched: no attribute points anywhere (URLs may appear as text: the recipe's teacher.base_url)
    links = [v for tag in re.findall(r"<[a-zA-Z][^>]*>", html)
             for v in re.findall(r"""\b(?:src|href|action|srcset|poster)\s*=\s*["']?([^"'\s>]*)""", tag, flags=re.I)]
    assert links and all(v.startswith(("data:", "#")) for v in links), links
    assert "Content-Security-Policy" in html
    # dataset text is escaped
    assert "<script>alert('q')" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    # the sections a researcher looks for
    cost = manifest(builds["a"])["cost"]["critique"]["total_usd"]
    assert cost > 0
    for text in ("Counts per stage", "Histogram of critique lengths", "Teacher verdicts by source", "Teacher verdict vs. verifier",
                 "Answer verification", "Rejects by reason", "critique:truncated", "Deduplication",
                 "Decontamination", "Usage and cost", f"${cost:,.4f}", "Sampled examples", "Resolved recipe"):
        assert text in html, text
    rejects = pl.read_parquet(builds["a"] / "rejects.parquet")
    assert rejects.filter(pl.col("reason") == "duplicate")["id"][0] in html  # removed ids listed
    assert html.count('<div class="sample">') == 4


def test_inspect_samples_are_seeded_and_default_out(builds, tmp_path):
    from cftdata.report.data import Dataset

    ds = Dataset(sorted((builds["a"] / "data").glob("*.parquet")), "alpaca")
    assert ds.rows == 40 and len(ds.files) == 3
    ids = pl.read_parquet(builds["a"] / "data" / "*.parquet")["id"].to_list()
    one, two = ds.sample(5, seed=1), ds.sample(5, seed=1)
    assert [s["index"] for s in one] == [s["index"] for s in two]
    assert [s["index"] for s in ds.sample(5, seed=2)] != [s["index"] for s in one]
    for s in one:  # every sampled row is rebuilt exactly from its parquet row
        i = s["index"]
        assert s["fields"]["id"] == ids[i]
        assert s["critique"].startswith("The student" if i == 0 else f"Critique {i}:")
        assert s["response"].startswith("Step 1: add.\n\nSolution:\nso")  # only the first separator splits

    build = tmp_path / "copy"
    shutil.copytree(builds["b"], build)
    res = CliRunner().invoke(_cli(), ["inspect", str(build)])
    assert res.exit_code == 0, res.output
    html = (build / "report" / "index.html").read_text(encoding="utf-8")
    assert "Teacher verdict vs. verifier" not in html and "Deduplication" not in html  # absent: skipped
    assert html.count('<div class="sample">') == 5 and "Question " in html


@pytest.mark.parametrize("fmt", ["alpaca", "messages", "prompt-completion", "sft-alpaca"])
def test_question_response_critique_from_every_format(tmp_path, fmt, monkeypatch):
    from cftdata.report.data import Dataset

    monkeypatch.setenv(KEY_ENV, "sk-report-test")
    with serve(plugins=["tests.servers.scripted_critic:register"]) as (url, _stats):
        build = make_build(tmp_path / fmt, url, tmp_path / "cache", n=9, fmt=fmt, quality=False)
    ds = Dataset(sorted((build / "data").glob("*.parquet")), fmt)
    rows = _rows(9)
    crit = ds.lengths("critique")
    if fmt == "sft-alpaca":
        assert crit.size == 0
        assert list(ds.lengths("response")) == [len(r["response"]) for r in rows]
    else:
        assert list(crit) == [len(r["critique"]) for r in rows]
        assert list(ds.lengths("response")) == [len(r["response"]) for r in rows]
    assert list(ds.lengths("question")) == [len(r["question"]) for r in rows]
    s = ds.sample(9, seed=0)
    assert s[0]["question"] == EVIL_Q


# -- diff ------------------------------------------------------------------------------------


def test_diff_json_plain_and_rich(builds):
    runner = CliRunner()
    res = runner.invoke(_cli(), ["diff", str(builds["a"]), str(builds["b"]), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    m = {r["metric"]: r for r in d["metrics"]}
    assert (m["rows out"]["a"], m["rows out"]["b"]) == (40, 25)
    assert m["teacher"]["a"] == "openai:gpt-4o-mini" and m["teacher"]["b"] == "openai:gpt-4o"
    assert (m["rejects dedup:duplicate"]["a"], m["rejects dedup:duplicate"]["b"]) == (3, 0)
    assert m["teacher/verifier agreement"]["b"] == "(absent)"
    assert m["critique chars mean"]["a"] > 0 and m["critique chars median"]["b"] > 0
    ma, mb = manifest(builds["a"]), manifest(builds["b"])
    assert m["critique cost usd"]["a"] == ma["cost"]["critique"]["total_usd"] > 0
    assert m["critique input tokens"]["b"] == mb["usage"]["critique"]["input_tokens"] > 0
    keys = {r["key"] for r in d["recipe_diff"]}
    assert {"teacher.model", "output.format", "output.dir"} <= keys
    assert "teacher.backend" not in keys

    res = runner.invoke(_cli(), ["diff", str(builds["a"]), str(builds["b"])])  # not a TTY: plain text
    assert res.exit_code == 0, res.output
    assert "recipe keys that differ" in res.output and "teacher.model" in res.output
    assert "\x1b[" not in res.output and "┃" not in res.output
    line = next(x for x in res.output.splitlines() if " rows out " in x)
    assert line.startswith("*") and "-15 (-38%)" in line

    import io

    from rich.console import Console

    from cftdata.report.diff import diff_builds, print_rich

    buf = io.StringIO()
    print_rich(diff_builds(builds["a"], builds["b"]), Console(file=buf, force_terminal=True, width=160))
    assert "critique chars median" in buf.getvalue() and "teacher.model" in buf.getvalue()


# -- status ----------------------------------------------------------------------------------


def test_status_of_a_finished_build(builds):
    res = CliRunner().invoke(_cli(), ["status", str(builds["a"])])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "complete" in out and "rows out: 40" in out and "nothing left to do" in out
    assert "cftdata build recipes/quickstart.yaml --set" in out
    # one answer per critique call: a made 40 + 2 truncated (gpt-4o-mini), b 25 + 2 (gpt-4o)
    assert f"{builds['cache'] / 'requests.sqlite'} holds 69 answers" in out
    assert "gpt-4o-mini: 42" in out and "gpt-4o: 27" in out
    info = json.loads(CliRunner().invoke(_cli(), ["status", str(builds["a"]), "--json"]).output)
    assert info["finished"]["cost_usd"] == manifest(builds["a"])["cost"]["critique"]["total_usd"]
    assert info["cache"]["answers"] == 69


def test_status_of_an_interrupted_build_in_pipeline_format(tmp_path, monkeypatch):
    build = tmp_path / "run"
    make_staging(build)
    make_cache(tmp_path / "envcache", {"smollm2-135m": 3})
    monkeypatch.setenv("CFTDATA_CACHE_DIR", str(tmp_path / "envcache"))
    res = CliRunner().invoke(_cli(), ["status", str(build)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "interrupted" in out and "shards done: 2" in out and "source rows read: 4" in out
    assert "rows through every stage so far: 3" in out
    assert "remaining: unknown" in out
    assert "rerun the same `cftdata build" in out
    assert "holds 3 answers" in out
    assert "respond 300 in / 600 out" in out  # tokens from the pool files

    res = CliRunner().invoke(_cli(), ["inspect", str(build)])  # nothing to inspect yet
    assert res.exit_code == 2 and "cftdata status" in res.stderr


def test_status_of_an_interrupted_build_with_recipe_and_total(tmp_path, builds):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    build = tmp_path / "run"
    shutil.copytree(builds["a"], build)  # a previous finished build stays in place during a rebuild
    make_staging(build, {"recipe_file": str(ROOT / "recipes" / "quickstart.yaml"),
                         "overrides": [f"output.dir={build}", "teacher.backend=openai",
                                       "teacher.model=gpt-4o-mini", "run.shard_size=2"],
                         "limit": 10, "pid": dead.pid})
    info = json.loads(CliRunner().invoke(_cli(), ["status", str(build), "--json"]).output)
    run = info["running"]
    assert run["state"] == "interrupted" and str(dead.pid) in run["why"]
    assert run["total"] == 10 and run["remaining_rows"] == 6 and run["remaining_shards"] == 3
    assert run["eta_s"] == pytest.approx(60.0)
    # teacher gpt-4o-mini at $0.15/$0.60 per M tokens on 3000 in / 1500 out; the local generator is free
    assert run["cost_usd"] == pytest.approx((3000 * 0.15 + 1500 * 0.60) / 1e6)
    assert run["resume"]["command"].startswith("cftdata build ")
    assert "--limit 10" in run["resume"]["command"] and "--set run.shard_size=2" in run["resume"]["command"]
    text = CliRunner().invoke(_cli(), ["status", str(build)]).output
    assert "remaining: 6 source rows (~3 shards)" in text
    assert "previous finished build" in text


# -- errors and import cost --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "diff", "status"])
def test_not_a_build_is_a_user_error(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "manifest.json").write_text("{not json")
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for target, words in ((tmp_path / "missing", "no such folder"), (empty, "not a cftdata build"),
                          (junk, "cannot read the manifest"), (a_file, "is a file")):
        args = [command, str(target)] + ([str(target)] if command == "diff" else [])
        res = CliRunner().invoke(_cli(), args)
        assert res.exit_code == 2, (target, res.output)
        assert res.stderr.startswith("error: ") and words in res.stderr
        assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1


def test_commands_module_imports_no_heavy_modules():
    code = ("import sys, cftdata.report.commands; "
            "heavy = [m for m in ('polars', 'pyarrow', 'matplotlib', 'numpy', 'rich') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_registered_in_the_real_cli(builds, tmp_path):
    assert {"inspect", "diff", "status"} <= set(cli_main.commands)
    r = run_cli("status", str(builds["a"]))
    assert r.returncode == 0 and "complete" in r.stdout, r.stderr
    r = run_cli("diff", str(tmp_path / "nope"), str(builds["a"]))
    assert r.returncode == 2 and r.stderr.startswith("error: no such folder")


# -- a real build ----------------------------------------------------------------------------


@pytest.mark.slow
def test_inspect_a_real_build(tmp_path, bundled_gguf):
    out = tmp_path / "real"
    r = run_cli("build", "recipes/quickstart.yaml", "--limit", "4", "--set", f"output.dir={out}", "-q")
    assert r.returncode == 0, r.stderr
    res = CliRunner().invoke(_cli(), ["inspect", str(out), "--samples", "2"])
    assert res.exit_code == 0, res.output
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 4 and html.count('<div class="sample">') == 2
    res = CliRunner().invoke(_cli(), ["status", str(out)])
    assert res.exit_code == 0 and "complete" in res.output


# -- headless browser --------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM_BIN"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """A minimal Chrome DevTools Protocol client over a stdlib websocket (RFC 6455, text frames)."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake failed")
            head += chunk
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _recv_message(self) -> dict:
        data = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            data += payload
            if b0 & 0x80:
                return json.loads(data)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self._send_frame(0x1, json.dumps({"id": my_id, "method": method, "params": params}).encode())
        while True:
            msg = self._recv_message()
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while time.monotonic() < deadline:
            msg = self._recv_message()
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise TimeoutError(method)

    def drain(self, seconds: float) -> None:
        self.sock.settimeout(seconds)
        with contextlib.suppress(TimeoutError, OSError):
            while True:
                msg = self._recv_message()
                if "method" in msg:
                    self.events.append(msg)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _browser_errors(events: list[dict]) -> list[str]:
    errors = []
    for ev in events:
        p = ev.get("params", {})
        if ev["method"] == "Runtime.exceptionThrown":
            errors.append(json.dumps(p.get("exceptionDetails", {}))[:500])
        elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(json.dumps(p.get("args", []))[:500])
        elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            errors.append(p["entry"].get("text", "")[:500])
    return errors


def test_report_renders_in_headless_chromium(builds, tmp_path):
    """Open the page in a real browser: no console error, every chart decoded, a screenshot saved."""
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    out = tmp_path / "rep"
    res = CliRunner().invoke(_cli(), ["inspect", str(builds["a"]), "--out", str(out), "--samples", "3"])
    assert res.exit_code == 0, res.output
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1280,900",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    dev = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        dev = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            dev.call(f"{domain}.enable")
        dev.call("Page.navigate", url=(out / "index.html").resolve().as_uri())
        dev.wait_for("Page.loadEventFired")
        dev.drain(0.5)
        probe = dev.call("Runtime.evaluate", returnByValue=True, expression="""JSON.stringify({
            title: document.title,
            scripts: document.scripts.length,
            images: Array.from(document.images).map(i => ({id: i.id, ok: i.complete && i.naturalWidth > 0,
                                                          w: i.naturalWidth, data: i.src.startsWith('data:image/png')})),
            samples: document.querySelectorAll('.sample').length,
            escaped: document.body.innerText.includes("<script>alert('q')</script>"),
            height: document.documentElement.scrollHeight})""")
        info = json.loads(probe["result"]["value"])
        assert info["scripts"] == 0
        assert {i["id"] for i in info["images"]} == {f"img-{c}" for c in CHARTS}
        assert all(i["ok"] and i["data"] and i["w"] > 300 for i in info["images"]), info["images"]
        assert info["samples"] == 3 and info["escaped"]  # the evil question is shown as text, not run
        height = min(int(info["height"]), 16000)
        dev.call("Emulation.setDeviceMetricsOverride", width=1280, height=height, deviceScaleFactor=1, mobile=False)
        shot = dev.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
        dev.drain(0.3)
        assert _browser_errors(dev.events) == []
    finally:
        if dev is not None:
            dev.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the browser we started, and its helpers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    shot_path = tmp_path / "report-screenshot.png"
    shot_path.write_bytes(png)
    artifacts = os.environ.get("CFTDATA_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_path, Path(artifacts) / "report-screenshot.png")
        shutil.copytree(out, Path(artifacts) / "report", dirs_exist_ok=True)
