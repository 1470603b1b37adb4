"""Decode speed of the bundled GGUF with llama.cpp's extra buffer types on vs off, on this CPU.

The `auto` policy (cftdata/backends/llama_runtime.py) turns extra buffers off only on AMX CPUs; this
script shows what that costs (or would cost) here. It loads the model once per setting, then
alternates the settings over several rounds so that background load hits both alike, and prints
tokens/s per round and the median, plus whether the two settings wrote the same text (greedy).

    python benchmarks/llama_extra_buffers.py [--rounds 5] [--tokens 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from cftdata.backends.llama_runtime import cpu_info, load_llama, use_extra_buffers
from cftdata.backends.local_llama import resolve_gguf

PROMPT = [{"role": "user", "content": "Explain step by step how to add 27 and 48, then check the result."}]


def decode(llm, tokens: int) -> tuple[float, str, int]:
    start = time.perf_counter()
    out = llm.create_chat_completion(messages=PROMPT, max_tokens=tokens, temperature=0.0, seed=0)
    elapsed = time.perf_counter() - start
    return out["usage"]["completion_tokens"] / elapsed, out["choices"][0]["message"]["content"], \
        out["usage"]["completion_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    cpu = cpu_info()
    print(f"CPU: {cpu.describe()}; auto policy here: extra buffers {'on' if use_extra_buffers('auto', cpu) else 'off'}")
    gguf = str(resolve_gguf("smollm2-135m"))
    models = {setting: load_llama(gguf, extra_buffers_setting=setting, n_ctx=1024, verbose=False,
                                  **({"n_threads": args.threads} if args.threads else {}))
              for setting in ("on", "off")}
    speeds: dict[str, list[float]] = {"on": [], "off": []}
    texts: dict[str, str] = {}
    for llm in models.values():  # warm-up
        decode(llm, 16)
    for r in range(args.rounds):
        for setting in (("on", "off") if r % 2 == 0 else ("off", "on")):
            tps, text, n = decode(models[setting], args.tokens)
            speeds[setting].append(tps)
            texts[setting] = text
            print(f"round {r + 1}  extra buffers {setting:>3}: {tps:7.1f} tokens/s ({n} tokens)")
    on, off = statistics.median(speeds["on"]), statistics.median(speeds["off"])
    print(f"median tokens/s: on {on:.1f}, off {off:.1f} (off/on = {off / on:.3f}); "
          f"same greedy text: {texts['on'] == texts['off']}")


if __name__ == "__main__":
    main()
