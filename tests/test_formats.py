"""Every output layout renders byte for byte what its source wrote (strings written out here, not derived)."""

from __future__ import annotations

import pytest

from cftdata.formats import FORMATS, Formatter
from cftdata.interop import llamafactory_entry

ROW = {"id": "r1", "question": "What is 2+2?", "response": "2+2=5. The answer is 5.",
       "critique": "The sum is 4.\n\nConclusion: wrong [END]"}
CRITIQUE_INSTRUCTION = "Please critique whether the following solution to the question is correct."


@pytest.mark.parametrize("fmt, expected", [
    # TIGER-Lab/WebInstruct-CFT (published)
    ("alpaca", {"instruction": CRITIQUE_INSTRUCTION,
                "input": "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5. The answer is 5.",
                "output": "The sum is 4.\n\nConclusion: wrong [END]"}),
    # Wyyyb/CriticCoT single_format_cft(question, solution): the self-generated 80K run
    ("alpaca-authors", {"instruction": CRITIQUE_INSTRUCTION + "\n\n",
                        "input": "What is 2+2?\nSolution:\n2+2=5. The answer is 5.\n",
                        "output": "The sum is 4.\n\nConclusion: wrong [END]"}),
    # postprocess_metamath_batch_data_0124.py: the answer parsed out of the batch prompt keeps "\n    "
    ("alpaca-batch", {"instruction": CRITIQUE_INSTRUCTION + "\n\n",
                      "input": "What is 2+2?\nSolution:\n2+2=5. The answer is 5.\n    \n",
                      "output": "The sum is 4.\n\nConclusion: wrong [END]"}),
    # postprocess_wi_mini_batch_data_0127.py: the question keeps its "Question:\n" label and blank line
    ("alpaca-mini", {"instruction": CRITIQUE_INSTRUCTION + "\n\n",
                     "input": "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5. The answer is 5.\n",
                     "output": "The sum is 4.\n\nConclusion: wrong [END]"}),
    # fetch_webinstruct_ori_sft_80k_0123.py: the authors' SFT instruction
    ("sft-paper", {"instruction": "Please reason step by step to solve the following question.",
                   "input": "What is 2+2?", "output": "2+2=5. The answer is 5."}),
    ("sft-alpaca", {"instruction": "What is 2+2?", "input": "", "output": "2+2=5. The answer is 5."}),
])
def test_layout_exact(fmt, expected):
    assert Formatter(fmt, provenance=False).render(ROW) == expected
    with_prov = Formatter(fmt).render(ROW)
    assert with_prov["id"] == "r1" and {k: with_prov[k] for k in expected} == expected


def test_authors_batch_layout_is_what_their_postprocess_parses_from_the_batch_prompt():
    """Rebuild the authors' row from the real cft-batch user message with their parsing steps."""
    from cftdata.prompts import CRITIQUE_PROMPTS

    content = CRITIQUE_PROMPTS.get("cft-batch").render(question=ROW["question"], response=ROW["response"])[1]["content"]
    question, answer = content.split("\n\n    Answer: ")
    question = question.replace("\n    Question: ", "")
    assert Formatter("alpaca-batch", provenance=False).render(ROW)["input"] == question + f"\nSolution:\n{answer}\n"


def test_every_alpaca_family_layout_maps_to_llamafactory_alpaca():
    for name in FORMATS:
        entry = llamafactory_entry("x", name)
        family = FORMATS.get(name).family
        if family == "alpaca":
            assert entry["x"]["formatting"] == "alpaca", name
        elif family == "messages":
            assert entry["x"]["formatting"] == "sharegpt"
        else:
            assert entry is None
