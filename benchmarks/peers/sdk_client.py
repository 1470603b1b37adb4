"""The plain ``openai`` SDK as a user would write it: AsyncOpenAI, a semaphore, asyncio.gather.

Run by ``benchmarks/rate_limits.py`` in its own process: ``python sdk_client.py CONFIG.json``. The
config names the fault server, the prompts file (JSONL of ``{"id", "messages"}``), the generation
parameters and ``concurrency`` (the harness gives what Little's law needs at the case's limit and
latency: the SDK has no limiter, so this is the user's tuning). SDK defaults otherwise: 2 retries
with its own backoff (429s included). Writes ``{"ok": n, "failed": n}`` to ``out``.
"""

import asyncio
import json
import sys
from pathlib import Path


async def main(cfg: dict) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=cfg["base_url"], api_key=cfg["api_key"])
    sem = asyncio.Semaphore(cfg["concurrency"])
    with open(cfg["prompts"]) as f:
        rows = [json.loads(line) for line in f]

    async def one(row: dict) -> bool:
        async with sem:
            try:
                r = await client.chat.completions.create(model=cfg["model"], messages=row["messages"], **cfg["params"])
                return r.choices[0].message.content is not None
            except openai.OpenAIError:
                return False

    results = await asyncio.gather(*(one(r) for r in rows))
    await client.close()
    return {"ok": sum(results), "failed": len(results) - sum(results)}


if __name__ == "__main__":
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).write_text(json.dumps(asyncio.run(main(cfg))))
