"""The llama.cpp extra-buffer policy that keeps the bundled model from crashing on Intel CPUs with AMX.

The policy is a pure function of the CPU flags, tested here for AMX and non-AMX CPUs on every machine;
the code path that turns the buffers off runs a real generation on every CPU (forced with ``off``).
"""

from __future__ import annotations

import pytest

from cftdata.backends.llama_runtime import CpuInfo, cpu_info, parse_cpuinfo, use_extra_buffers
from cftdata.errors import BackendConfigError

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: ignored second core
"""
EPYC = """processor\t: 0
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu sse2 avx2 fma
"""


def test_parse_cpuinfo_reads_the_first_processor():
    amx = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert amx.model == "Intel(R) Xeon(R) Platinum 8488C"
    assert amx.has_amx and "avx512f" in amx.flags
    assert amx.describe() == ("Intel(R) Xeon(R) Platinum 8488C (avx2, avx512f, avx512_vnni, avx512_bf16, "
                              "amx_int8, amx_tile, amx_bf16)")
    epyc = parse_cpuinfo(EPYC)
    assert not epyc.has_amx and epyc.describe() == "AMD EPYC 7R13 Processor (avx2)"
    assert parse_cpuinfo("").flags == frozenset()


@pytest.mark.parametrize(("setting", "cpu", "expected"), [
    ("auto", SAPPHIRE_RAPIDS, False),  # the crashing AMX path is avoided
    ("auto", EPYC, True),  # llama.cpp's own default elsewhere: nothing changes on AMD/AVX2
    ("on", SAPPHIRE_RAPIDS, True),
    ("off", EPYC, False),
    (False, EPYC, False),
    (True, SAPPHIRE_RAPIDS, True),
    (" OFF ", EPYC, False),
])
def test_policy(setting, cpu, expected):
    assert use_extra_buffers(setting, parse_cpuinfo(cpu)) is expected


def test_policy_from_environment(monkeypatch):
    amx = parse_cpuinfo(SAPPHIRE_RAPIDS)
    monkeypatch.setenv("CFTDATA_LLAMA_EXTRA_BUFFERS", "on")
    assert use_extra_buffers(None, amx) is True
    monkeypatch.setenv("CFTDATA_LLAMA_EXTRA_BUFFERS", "auto")
    assert use_extra_buffers(None, amx) is False
    monkeypatch.delenv("CFTDATA_LLAMA_EXTRA_BUFFERS")
    assert use_extra_buffers(None, parse_cpuinfo(EPYC)) is True
    with pytest.raises(BackendConfigError, match="extra_buffers must be one of auto, on, off"):
        use_extra_buffers("sometimes", amx)


def test_this_machine_is_described():
    info = cpu_info()
    assert isinstance(info, CpuInfo) and info.model
    assert use_extra_buffers("auto") is (not info.has_amx)


@pytest.mark.parametrize("setting", ["off", "auto"])
def test_load_llama_applies_the_policy_and_generates(bundled_gguf, setting):
    """The buffers-off path runs on every CPU (forced), and auto is what this CPU needs."""
    from cftdata.backends.llama_runtime import load_llama

    llm = load_llama(bundled_gguf, extra_buffers_setting=setting, n_ctx=512, n_threads=2, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is use_extra_buffers(setting)
        out = llm.create_chat_completion(messages=[{"role": "user", "content": "What is 2+3?"}], max_tokens=8,
                                         temperature=0, seed=1)
        assert out["choices"][0]["message"]["content"]
    finally:
        llm.close()
    # The patch is scoped to the load: later loads see llama.cpp's own defaults again.
    from llama_cpp import llama_cpp as lib

    assert lib.llama_model_default_params().use_extra_bufts is True


def test_local_backend_passes_the_option(bundled_gguf):
    from cftdata.backends import Request, make_backend
    from cftdata.recipe import TeacherSpec

    spec = TeacherSpec(backend="local", model="smollm2-135m", options={"extra_buffers": "off", "n_ctx": 512},
                       params={"temperature": 0, "max_tokens": 8})
    backend = make_backend(spec)
    got = []
    backend.generate([Request.make("smollm2-135m", [{"role": "user", "content": "Hi"}],
                                   spec.params.as_request_params())], lambda i, r: got.append(r))
    assert got[0].ok and backend._llm.model_params.use_extra_bufts is False
    backend.close()
