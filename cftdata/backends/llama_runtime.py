"""Loading GGUF models with llama.cpp (llama-cpp-python) safely on every CPU.

llama.cpp moves weights into *extra buffer types* at load time (weight repacking: the AMX buffer on
Intel CPUs with AMX, e.g. Sapphire Rapids; the CPU repack buffer for some quantisations). With
llama-cpp-python 0.3.x built with native flags, the AMX path segfaults on the first decode of the
bundled SmolLM2 Q4_1 model (llama.cpp issue #20824). Turning extra buffer types off
(``llama_model_params.use_extra_bufts = false``, what llama.cpp's own ``--no-repack`` does) makes the
same model run correctly; llama-cpp-python has no ``Llama(...)`` argument for it, so this module sets
it on the default model parameters while a model loads.

Policy (:func:`use_extra_buffers`): ``auto`` (the default) turns extra buffers off where the CPU
reports AMX (``amx_int8`` / ``amx_tile`` / ``amx_bf16`` in ``/proc/cpuinfo``) and leaves llama.cpp's
default (on) elsewhere, so AMD and older Intel CPUs load exactly as before. ``on`` / ``off`` force it:
per model with the backend option ``extra_buffers``, or for every model in the process with the
environment variable ``CFTDATA_LLAMA_EXTRA_BUFFERS`` (which also reaches the test server).

Every place the project loads a GGUF through llama.cpp goes through :func:`load_llama`; the
OpenAI-compatible server uses ``python -m cftdata.backends.llama_server`` (llama_cpp.server with the
same policy).
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cftdata.errors import BackendConfigError

#: CPU flags (as /proc/cpuinfo spells them) of the AMX units whose llama.cpp buffer type crashes.
AMX_FLAGS = ("amx_int8", "amx_tile", "amx_bf16")
#: CPU flags worth naming in an error message about a native crash.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", *AMX_FLAGS)
ENV_EXTRA_BUFFERS = "CFTDATA_LLAMA_EXTRA_BUFFERS"
_CHOICES = ("auto", "on", "off")
_load_lock = threading.Lock()


@dataclass(frozen=True)
class CpuInfo:
    """The processor's model name and feature flags (empty where /proc/cpuinfo is not available)."""

    model: str
    flags: frozenset[str]

    @property
    def has_amx(self) -> bool:
        return any(f in self.flags for f in AMX_FLAGS)

    def describe(self) -> str:
        """``Intel(R) Xeon(R) ... (avx2, avx512f, amx_int8)``: the model and the flags that matter here."""
        shown = [f for f in REPORTED_FLAGS if f in self.flags]
        return f"{self.model} ({', '.join(shown) if shown else 'no AVX2/AVX-512/AMX flags'})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's ``model name`` and ``flags`` from the text of /proc/cpuinfo."""
    model, flags = "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value
        if model and flags:
            break
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown CPU", frozenset(flags.split()))


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return parse_cpuinfo("")


def use_extra_buffers(setting: str | bool | None = None, cpu: CpuInfo | None = None) -> bool:
    """Whether llama.cpp may use extra buffer types (weight repacking, AMX) when it loads a model.

    ``setting`` is the backend option (``auto``/``on``/``off``, or a bool); None falls back to
    ``$CFTDATA_LLAMA_EXTRA_BUFFERS``, then ``auto``. ``auto``: off on CPUs with AMX, on elsewhere.
    """
    if setting is None:
        setting = os.environ.get(ENV_EXTRA_BUFFERS) or "auto"
    if isinstance(setting, bool):
        return setting
    value = str(setting).strip().lower()
    if value not in _CHOICES:
        raise BackendConfigError(
            f"llama.cpp extra_buffers must be one of {', '.join(_CHOICES)} (option extra_buffers or "
            f"${ENV_EXTRA_BUFFERS}), not {setting!r}."
        )
    if value == "auto":
        return not (cpu or cpu_info()).has_amx
    return value == "on"


def _with_extra_buffers(original: Any, enabled: bool) -> Any:
    """``llama_model_default_params`` that sets ``use_extra_bufts`` on what ``original`` returns."""

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = enabled
        return params

    defaults._cftdata_original = original  # type: ignore[attr-defined]
    return defaults


@contextlib.contextmanager
def extra_buffers(enabled: bool) -> Iterator[None]:
    """While active, models loaded by llama-cpp-python get ``use_extra_bufts = enabled``.

    llama-cpp-python builds its model parameters from ``llama_model_default_params()``; this wraps that
    function (module-wide, so loads are serialised by a lock).
    """
    from llama_cpp import llama_cpp as lib

    with _load_lock:
        original = lib.llama_model_default_params
        lib.llama_model_default_params = _with_extra_buffers(original, enabled)
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def install_extra_buffers_policy(setting: str | bool | None = None) -> bool:
    """Apply the policy to every later model load in this process (for the server); returns it."""
    from llama_cpp import llama_cpp as lib

    enabled = use_extra_buffers(setting)
    original = getattr(lib.llama_model_default_params, "_cftdata_original", lib.llama_model_default_params)
    lib.llama_model_default_params = _with_extra_buffers(original, enabled)
    return enabled


def load_llama(model_path: str | Path, *, extra_buffers_setting: str | bool | None = None, **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path, **kwargs)`` with the extra-buffer policy applied.

    The returned object's ``model_params.use_extra_bufts`` says what llama.cpp was given.
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        raise BackendConfigError("llama.cpp models need llama-cpp-python: pip install -e '.[local]'.") from None
    enabled = use_extra_buffers(extra_buffers_setting)
    with extra_buffers(enabled):
        return Llama(model_path=str(model_path), **kwargs)
