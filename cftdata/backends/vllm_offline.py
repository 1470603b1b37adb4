"""``vllm``: offline in-process generation with ``vllm.LLM`` (GPU), for self-generated responses at scale.

Needs the ``vllm`` extra; imported only when this backend runs. Requests are sent in chunks
(``options.chunk_size``, default 512) through ``LLM.chat`` (the model's chat template), so each finished
chunk is cached before the next starts. Engine settings pass through from ``options``:
``tensor_parallel_size``, ``data_parallel_size``, ``pipeline_parallel_size``, ``max_model_len``,
``gpu_memory_utilization``, ``dtype``, ``enable_prefix_caching``, ``trust_remote_code``, ``download_dir``,
``seed``, ``quantization``.

With ``run.executor: ray`` the requests run as a Ray Data job instead (one ``vllm.LLM`` per GPU actor; see
:mod:`cftdata.executors.ray_data`); results still come back through ``on_result``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cftdata.backends.base import BACKENDS, Backend, OnResult, Request, Result
from cftdata.errors import BackendConfigError

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

    def __init__(self, spec) -> None:
        super().__init__(spec)
        unknown = set(spec.options) - set(ENGINE_OPTIONS) - {"chunk_size"}
        if unknown:
            raise BackendConfigError(f"vllm backend: unknown options {sorted(unknown)}; "
                                     f"engine options: {', '.join(ENGINE_OPTIONS)}, chunk_size.")
        self.chunk_size = int(spec.options.get("chunk_size", 512))
        self._llm = None
        self._ray = None  # a RaySession with run.executor: ray
        self.calls = 0

    @property
    def cache_namespace(self) -> str:
        return "vllm:offline"

    def _load(self):
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError:
                raise BackendConfigError("The vllm backend needs vLLM and a GPU: pip install -e '.[vllm]'.") from None
            engine = {k: v for k, v in self.spec.options.items() if k in ENGINE_OPTIONS}
            self._llm = LLM(model=self.spec.model, **engine)
        return self._llm

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        run = getattr(self.spec, "_run", None)
        if run is not None and run.executor == "ray":
            from cftdata.executors import ray_data

            if self._ray is None:
                self._ray = ray_data.RaySession(run)
            self.calls += ray_data.generate_on_ray(requests, on_result, self.spec, run)
            return
        kwargs = [sampling_kwargs(r.param_dict) for r in requests]  # validate before loading a model
        llm = self._load()
        from vllm import SamplingParams

        for start in range(0, len(requests), self.chunk_size):
            chunk = range(start, min(start + self.chunk_size, len(requests)))
            outputs = llm.chat([requests[i].message_dicts for i in chunk],
                               sampling_params=[SamplingParams(**kwargs[i]) for i in chunk], use_tqdm=False)
            for i, out in zip(chunk, outputs, strict=True):
                self.calls += 1
                on_result(i, parse_output(out))

    def stats(self) -> dict:
        return {"requests": self.calls}

    def close(self) -> None:
        if self._ray is not None:
            self._ray.close()
            self._ray = None
