"""Shared fixtures: paths to real public data (../shared/data), an isolated cache, the CLI runner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own request cache unless it sets one."""
    monkeypatch.setenv("CFTDATA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real public data not found at {SHARED_DATA} (it sits beside the checkout in CI)")
    return SHARED_DATA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the real `cftdata` entry point in a subprocess (what a user runs)."""
    return subprocess.run([sys.executable, "-m", "cftdata.cli", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="the local extra (llama-cpp-python) is not installed")
    from cftdata.backends.local_llama import resolve_gguf

    return resolve_gguf("smollm2-135m")


@pytest.fixture(scope="session")
def llama_server(bundled_gguf):
    """A real OpenAI-compatible server (llama_cpp.server, through cftdata's wrapper that applies the llama.cpp
    extra-buffer policy) serving the bundled model on 127.0.0.1."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cftdata.backends.llama_server", "--model", str(bundled_gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2-135m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import httpx

    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("llama_cpp.server did not start")
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
