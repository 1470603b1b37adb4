"""The paper's verdict rule on critiques written the way teachers write them."""

import pytest

from cftdata.stages.verdict import parse_verdict


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
