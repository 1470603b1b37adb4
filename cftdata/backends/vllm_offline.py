"""``vllm``: offline in-process generation with ``vllm.LLM`` (GPU), for self-generated responses at scale and
for evaluation.

Needs the ``vllm`` extra; imported only when this backend runs. Requests are sent in chunks
(``options.chunk_size``, default 512), so each finished chunk is cached before the next starts: chat requests
through ``LLM.chat`` (the model's chat template), raw-prompt requests through ``LLM.generate``. Engine
settings pass through from ``options``: ``tensor_parallel_size``, ``data_parallel_size``,
``pipeline_parallel_size``, ``max_model_len``, ``gpu_memory_utilization``, ``dtype``,
``enable_prefix_caching``, ``trust_remote_code``, ``download_dir``, ``seed``, ``quantization``,
``max_num_seqs``, ``enforce_eager``.

The backend knows nothing about where it runs: with ``run.executor: ray`` the executor builds this same
backend inside each Ray actor (:mod:`cftdata.executors`), one engine per GPU actor.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from cftdata.backends.base import BACKENDS, Backend, OnResult, Request, Result
from cftdata.backends.models import model_fingerprint
from cftdata.errors import BackendConfigError, CftdataError, EndpointError

ENGINE_OPTIONS = ("tensor_parallel_size", "data_parallel_size", "pipeline_parallel_size", "max_model_len",
                  "gpu_memory_utilization", "dtype", "enable_prefix_caching", "trust_remote_code",
                  "download_dir", "seed", "quantization", "max_num_seqs", "enforce_eager")

#: Request parameters and their SamplingParams names.
SAMPLING_NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                  "max_tokens": "max_tokens", "seed": "seed", "stop": "stop",
                  "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                  "repetition_penalty": "repetition_penalty"}


def sampling_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` from a request's parameters (unknown ones are an error)."""
    unknown = set(params) - set(SAMPLING_NAMES)
    if unknown:
        raise BackendConfigError(f"vllm backend: unsupported sampling parameters {sorted(unknown)}; "
                                 f"supported: {', '.join(sorted(SAMPLING_NAMES))}.")
    return {SAMPLING_NAMES[k]: v for k, v in params.items()}


def parse_output(output: Any) -> Result:
    """A ``vllm.RequestOutput`` (first completion) as a Result: text, finish reason, prompt and output tokens."""
    if not getattr(output, "outputs", None):
        return Result(error="empty_response", error_detail="vLLM returned no completion")
    comp = output.outputs[0]
    return Result(
        text=comp.text,
        finish_reason=comp.finish_reason,
        input_tokens=len(output.prompt_token_ids or []),
        output_tokens=len(comp.token_ids or []),
    )


@BACKENDS.register("vllm")
class VLLMBackend(Backend):
    name = "vllm"
    raw_prompts = True
    scale_out = True
    accelerator = True
    process_per_model = True
    #: The engine and sampling classes; None = ``vllm.LLM`` / ``vllm.SamplingParams``. A subclass may name
    #: others that follow vLLM's documented interface (the tests do: no GPU there).
    llm_cls: ClassVar[Callable[..., Any] | None] = None
    sampling_cls: ClassVar[Callable[..., Any] | None] = None

    @classmethod
    def can_run(cls, model: str) -> bool:
        """vLLM installed and a CUDA device visible (not for GGUF files)."""
        if model.endswith(".gguf") or importlib.util.find_spec("vllm") is None:
            return False
        import torch

        return bool(torch.cuda.is_available())

    def __init__(self, spec) -> None:
        super().__init__(spec)
        unknown = set(spec.options) - set(ENGINE_OPTIONS) - {"chunk_size"}
        if unknown:
            raise BackendConfigError(f"vllm backend: unknown options {sorted(unknown)}; "
                                     f"engine options: {', '.join(ENGINE_OPTIONS)}, chunk_size.")
        self.chunk_size = int(spec.options.get("chunk_size", 512))
        self._llm = None
        self.calls = 0

    @property
    def cache_namespace(self) -> str:
        fp = model_fingerprint(self.spec.model)
        return "vllm:offline" + (f":{fp}" if fp else "")

    def _classes(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        if self.llm_cls is not None and self.sampling_cls is not None:
            return self.llm_cls, self.sampling_cls
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise BackendConfigError("The vllm backend needs vLLM and a GPU: pip install -e '.[vllm]'.") from None
        return LLM, SamplingParams

    def probe(self, spend: bool) -> str:
        """vLLM can be imported (the engine itself starts at the first request: minutes, a whole GPU)."""
        self._classes()
        return "OK, vLLM is importable (the engine starts at the first request)"

    def _load(self) -> Any:
        if self._llm is None:
            llm_cls, _ = self._classes()
            engine = {k: v for k, v in self.spec.options.items() if k in ENGINE_OPTIONS}
            try:
                self._llm = llm_cls(model=self.spec.model, **engine)
            except CftdataError:
                raise
            except Exception as e:
                raise EndpointError(
                    f"Backend 'vllm': the engine for model {self.spec.model!r} could not start "
                    f"({type(e).__name__}: {str(e)[:500]}), so the build stopped before any row was rejected. "
                    "Check that a GPU is visible (nvidia-smi), that the model fits (options.gpu_memory_utilization, "
                    "max_model_len, tensor_parallel_size) and that the model name or path is right; rerun the same "
                    "command once fixed.") from None
        return self._llm

    def check(self, requests: Sequence[Request]) -> None:
        for r in requests:
            sampling_kwargs(r.param_dict)

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        kwargs = [sampling_kwargs(r.param_dict) for r in requests]  # validate before loading a model
        if not requests:
            return
        llm = self._load()
        _, sampling_cls = self._classes()
        for start in range(0, len(requests), self.chunk_size):
            chunk = list(range(start, min(start + self.chunk_size, len(requests))))
            for raw in (False, True):  # chat and raw-prompt requests of the chunk, each kind in one engine call
                part = [i for i in chunk if requests[i].is_raw == raw]
                if not part:
                    continue
                params = [sampling_cls(**kwargs[i]) for i in part]
                try:
                    if raw:
                        outputs = llm.generate([requests[i].prompt for i in part], sampling_params=params,
                                               use_tqdm=False)
                    else:
                        outputs = llm.chat([requests[i].message_dicts for i in part], sampling_params=params,
                                           use_tqdm=False)
                    results = [parse_output(o) for o in outputs]
                    if len(results) != len(part):
                        raise RuntimeError(f"vLLM returned {len(results)} outputs for {len(part)} requests")
                except Exception as e:  # one failed engine call fails its requests, never the build
                    results = [Result(error="vllm_error", error_detail=f"{type(e).__name__}: {e}"[:500])] * len(part)
                for i, res in zip(part, results, strict=True):
                    self.calls += 1
                    on_result(i, res)

    def stats(self) -> dict:
        return {"requests": self.calls}

    def close(self) -> None:
        self._llm = None
