"""A fault-server plugin: several scripted teachers whose verdicts the tests know (teacher agreement, RL labels).

``serve(plugins=["tests.servers.panel_critic:register"])``: every Chat Completions answer (faults, limits,
counters and usage from the fault server) has its text replaced by ``"Critique by <model> of question <i>.
<the fault server's words>. Conclusion: <verdict>"``, where ``<i>`` is the number after ``Question`` in the prompt and the verdict is
:func:`verdict_for` (model, i). Any other model answers ``right``. A generator served by the same route gets
that text as its response, which is all the tests need. Model ``judge-ref`` judges against a reference answer
when the prompt shows one (:func:`reference_verdict`).
"""

from __future__ import annotations

import re

from tests.servers.fault_server import FaultServer, Request, Response
from tests.servers.scripted_critic import answer_with

#: model -> verdict of question i.
RULES = {
    "judge-even": lambda i: "right" if i % 2 == 0 else "wrong",
    "judge-three": lambda i: "wrong" if i % 3 == 0 else "right",
    "judge-right": lambda i: "right",
    "judge-unsure": lambda i: "unsure",  # no right/wrong: the verdict is unknown
}


def verdict_for(model: str, i: int) -> str:
    return RULES.get(model, lambda i: "right")(i)


def reference_verdict(prompt: str) -> str:
    """Model ``judge-ref``: with "Reference answer: X" in the prompt, right iff the solution's last \\boxed{}
    is X; without a reference it believes every solution (right)."""
    ref = re.search(r"Reference answer: (\S+)", prompt)
    if ref is None:
        return "right"
    boxed = re.findall(r"\\boxed\{([^}]*)\}", prompt)
    return "right" if boxed and boxed[-1] == ref.group(1) else "wrong"


def _panel(payload: dict, prompt: str, original: str) -> str:
    m = re.search(r"Question (\d+)", prompt)
    i = int(m.group(1)) if m else 0
    model = payload["model"]
    verdict = reference_verdict(prompt) if model == "judge-ref" else verdict_for(model, i)
    # the fault server's words (a digest of the request) keep answers to different requests different
    return f"Critique by {model} of question {i}. {original}. Conclusion: {verdict}"


async def critic(server: FaultServer, req: Request) -> Response:
    return await answer_with(server, req, _panel)


def register(server: FaultServer) -> None:
    server.add_route("POST", "/v1/chat/completions", critic)
