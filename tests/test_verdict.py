"""The paper's verdict rule on critiques written the way teachers write them."""

import pytest

from cftdata.errors import RecipeError
from cftdata.recipe import load_recipe
from cftdata.verdicts import VERDICT_RULES, parse_verdict, parse_verdict_authors
from tests.conftest import ROOT


@pytest.mark.parametrize("critique, verdict", [
    ("The student computed 7*12=84 and 84-65=19, which is correct.\n\nConclusion: right [END]", "right"),
    ("The student multiplied 12 by 12 instead of 12 by 7.\nConclusion: wrong [END]", "wrong"),
    ("The final answer 160 is incorrect; 80*2.5=200.\n\nConclusion: The solution is incorrect. [END]", "wrong"),
    ("Conclusion: The student's answer is correct.", "right"),
    ("**Conclusion**: right", "right"),
    ("CONCLUSION: WRONG", "wrong"),
    ("The answer 36 is correct.", "unknown"),  # no conclusion at all
    ("", "unknown"),
    (None, "unknown"),
    ("Conclusion: I cannot tell.", "unknown"),
    # Several "Conclusion" lines: only the text after the last one counts.
    ("Step 1 conclusion: wrong sign.\nBut it is fixed later.\nConclusion: right [END]", "right"),
    ("Conclusion: right at first glance.\nHowever, step 3 fails.\nConclusion: wrong [END]", "wrong"),
    # "incorrect" contains "correct": wrong must be tested first.
    ("Conclusion: incorrect", "wrong"),
    ("In conclusion, the reasoning is correct and the answer is right.", "right"),
])
def test_parse_verdict(critique, verdict):
    assert parse_verdict(critique) == verdict


@pytest.mark.parametrize("critique, cftdata, authors", [
    ("Conclusion: right [END]", "right", "right"),
    ("Conclusion: wrong [END]", "wrong", "wrong"),
    # The authors split on "Conclusion" case-sensitively: lower-case "conclusion" is not a split point, so the
    # whole text is scanned and "incorrect" earlier in it wins.
    ("Step 2 is incorrect at first sight but fixed.\nIn conclusion, the answer is right.", "right", "wrong"),
    ("CONCLUSION: WRONG", "wrong", "wrong"),
    # No conclusion: cftdata says unknown; the authors scan the whole text.
    ("The answer 36 is correct.", "unknown", "right"),
    ("I cannot tell.", "unknown", "wrong"),  # no unknown class: unparseable -> wrong
    ("Conclusion: I cannot tell.", "unknown", "wrong"),
    ("", "unknown", "wrong"),
    (None, "unknown", "wrong"),
    ("Conclusion: incorrect", "wrong", "wrong"),
])
def test_the_two_rules(critique, cftdata, authors):
    assert VERDICT_RULES.get("cftdata")(critique) == parse_verdict(critique) == cftdata
    assert VERDICT_RULES.get("authors")(critique) == parse_verdict_authors(critique) == authors


def test_rule_is_a_recipe_option_and_unreachable_keep_is_an_error():
    assert load_recipe(ROOT / "recipes" / "webinstruct.yaml").verdict.rule == "authors"
    assert load_recipe(ROOT / "recipes" / "quickstart.yaml").verdict.rule == "cftdata"
    with pytest.raises(RecipeError, match="unknown verdict rule 'paper'"):
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["verdict.rule=paper"])
    with pytest.raises(RecipeError, match="reject every row"):
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["verdict.rule=authors", "verdict.keep=[unknown]"])


def test_build_uses_the_recipe_rule(tmp_path):
    """A real build (critiques carried by the source): the authors' rule has no unknown class; cftdata's does, and
    verdict.keep filters by it. Layout alpaca-batch is written as the parquet rows."""
    import json

    import pyarrow.parquet as pq

    from cftdata.pipeline import build
    from cftdata.recipe import validate_recipe

    critiques = ["Fine.\nConclusion: right [END]", "Bad sum.\nConclusion: wrong [END]", "Looks correct to me.",
                 "No idea.", "in conclusion the sum is wrong"]
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps({"question": f"Q{i}?", "response": f"A{i}", "critique": c}) + "\n"
                           for i, c in enumerate(critiques)))

    def run(rule: str, **extra) -> tuple[dict, list[dict]]:
        res = build(validate_recipe({
            "name": f"v-{rule}", "source": {"path": str(src), "response": "response"}, "respond": {"mode": "existing"},
            "teacher": {"backend": "existing", "model": "published"}, "verdict": {"rule": rule, **extra},
            "output": {"dir": str(tmp_path / rule), "format": "alpaca-batch"}}))
        rows = pq.read_table(tmp_path / rule / "data").to_pylist()
        return res.manifest, rows

    m, rows = run("authors")
    assert m["stages"]["verdict"]["verdicts"] == {"right": 2, "wrong": 3} and m["stages"]["verdict"]["rule"] == "authors"
    assert rows[0]["input"] == "Q0?\nSolution:\nA0\n    \n" and rows[0]["instruction"].endswith("correct.\n\n")
    m, rows = run("cftdata", keep=["right", "wrong"])
    assert m["stages"]["verdict"]["verdicts"] == {"right": 1, "wrong": 2, "unknown": 2}
    assert len(rows) == 3 and m["counts"]["verdict"]["rejected"] == 2
