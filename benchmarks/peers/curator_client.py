"""Bespoke Curator 0.1.31 (``bespokelabs-curator``), run in its own virtualenv (it pins old ``datasets``).

Run by ``benchmarks/rate_limits.py``: ``<curator venv>/bin/python curator_client.py CONFIG.json``.
``curator.LLM`` with ``backend="openai"``, the fault server as ``base_url`` and
``max_requests_per_minute`` set to the limit, like cftdata's ``requests_per_minute``; the server sets
no token limit, so ``max_tokens_per_minute`` is set far above the need (Curator's default would
otherwise bind). ``require_all_responses`` is off so that a run with failures still reports its
counts. Everything else is Curator's default (10 retries, its own cool-down on 429).

Offline shims, which do not touch the request path: tiktoken cannot download its ``cl100k_base``
file here, so token counting uses ~4 characters per token (only Curator's token budget reads it);
telemetry is off; litellm reads its bundled cost map.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TELEMETRY_ENABLED", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")


class _Encoding:
    """A stand-in for tiktoken's cl100k_base: ~4 characters per token."""

    name = "cl100k_base"

    def encode(self, text, **_):
        return [0] * max(1, len(text) // 4)


def main(cfg: dict) -> dict:
    import tiktoken

    tiktoken.get_encoding = lambda name: _Encoding()
    tiktoken.encoding_for_model = lambda name: _Encoding()
    from bespokelabs import curator

    class Critic(curator.LLM):
        def prompt(self, row):
            return row["messages"]

        def parse(self, row, response):
            return {"id": row["id"], "critique": response}

    with open(cfg["prompts"]) as f:
        rows = [json.loads(line) for line in f]
    llm = Critic(
        model_name="gpt-4o-mini", backend="openai", generation_params=cfg["params"],
        backend_params={"base_url": cfg["base_url"], "api_key": cfg["api_key"],
                        "max_requests_per_minute": cfg["rpm"], "max_tokens_per_minute": 10**9,
                        "require_all_responses": False},
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = llm(rows, working_dir=tmp)
        ds = getattr(res, "dataset", res)
        ok = sum(1 for r in ds if r.get("critique"))
    return {"ok": ok, "failed": len(rows) - ok}


if __name__ == "__main__":
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).write_text(json.dumps(main(cfg)))
