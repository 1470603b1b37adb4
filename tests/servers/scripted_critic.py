"""A fault-server plugin that answers Chat Completions like a teacher: a critique with a known verdict.

``serve(plugins=["tests.servers.scripted_critic:register"])`` replaces ``POST /v1/chat/completions`` with
the fault server's own handler (faults, limits, counters, usage) whose answer text is then swapped for
:func:`critique_for` of the question's number (``Question <i>:`` in the prompt, 0 when absent), so real
builds get critiques whose text, length and verdict the tests know in advance. Truncated (``[[length]]``)
and failed answers are left as the fault server made them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.servers.fault_server import FaultServer, Request, Response, chat_completions

#: Critique text that must be shown as text, never run, in reports.
EVIL_CRITIQUE = "The student wrote </pre><img src=x onerror=alert(1)> ... Conclusion: right [END]"
VERDICTS = ("right", "wrong", "unknown", "right")


def critique_for(i: int) -> str:
    """The critique of question ``i``: the verdict cycles right, wrong, unknown, right; the length grows with i."""
    if i == 0:
        return EVIL_CRITIQUE
    return f"Critique {i}: </pre><img src=x onerror=alert(1)> " + "y" * (i * 11) + f" Conclusion: {VERDICTS[i % 4]} [END]"


async def answer_with(server: FaultServer, req: Request, text_for: Callable[[dict, str, str], str]) -> Response:
    """The fault server's answer (faults, limits, counters, usage) with its text replaced by
    ``text_for(payload, prompt, original text)``; truncated and failed answers are left as they are."""
    resp = await chat_completions(server, req)
    if resp.status != 200 or not resp.answered:
        return resp
    body: dict[str, Any] = json.loads(resp.body)
    choice = body["choices"][0]
    if choice["finish_reason"] != "stop" or not choice["message"]["content"]:
        return resp
    payload = req.json()
    prompt = "\n".join(str(m.get("content") or "") for m in payload["messages"])
    text = text_for(payload, prompt, choice["message"]["content"])
    choice["message"]["content"] = text
    body["usage"]["completion_tokens"] = (len(text) + 3) // 4
    body["usage"]["total_tokens"] = body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    return Response(200, json.dumps(body).encode(), headers=resp.headers, fault=resp.fault, answered=True)


def _scripted(payload: dict, prompt: str, original: str) -> str:
    m = re.search(r"Question (\d+):", prompt)
    return critique_for(int(m.group(1)) if m else 0)


async def critic(server: FaultServer, req: Request) -> Response:
    return await answer_with(server, req, _scripted)


def register(server: FaultServer) -> None:
    server.add_route("POST", "/v1/chat/completions", critic)
