"""Answer extraction rules and the math-verify worker pool (timeouts, caps, real-data accuracy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cftdata.errors import CftdataError
from cftdata.verify import (
    ANSWER_RULES,
    STATUSES,
    Verifier,
    VerifyResult,
    check_pair,
    extract_answer,
    verify_answers,
)

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
TOWER = "2^{2^{2^{2^{100}}}}"


def _data(rel: str) -> Path:
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"real public data not found at {path.resolve()} (shared/ sits beside the checkout)")
    return path


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------------------------
# Extraction rules
# ------------------------------------------------------------------------------------------------


def test_rules_registered():
    assert set(ANSWER_RULES) >= {"boxed", "answer_is", "gsm8k", "a_colon", "last_number", "auto"}
    with pytest.raises(CftdataError, match="Known answer rules"):
        extract_answer("x", "nope")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{\sqrt{\frac{a}{b^{2}}}}", r"\sqrt{\frac{a}{b^{2}}}"),
        (r"\fbox{7} is it", "7"),
        (r"\boxed{3} or rather \fbox{4}", "4"),
        (r"The answer is $\boxed 5$.", "5"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{ $12$. }", "12"),
        (r"\boxed{8} then a truncated \boxed{\frac{1", "8"),  # unbalanced last box is skipped
        ("no box here, answer 5", None),
        (r"\boxed{}", None),
        (r"\boxeds{5}", None),
    ],
)
def test_boxed(text, expected):
    assert extract_answer(text, "boxed") == expected


def test_answer_is_metamathqa_rows():
    rows = _jsonl(_data("format_samples/metamathqa_rows_from_nanochat_notes.jsonl"))
    answers = [extract_answer(r["response"], "answer_is") for r in rows]
    assert answers[0] == r"\sqrt{5}"
    assert all(a for a in answers)
    assert extract_answer("The answer is 3. Wait, the answer is: 4.\nDone", "answer_is") == "4"
    assert extract_answer(r"The final answer is $\boxed{12}$.", "answer_is") == "12"
    assert extract_answer("no conclusion", "answer_is") is None


def test_gsm8k_and_a_colon_and_last_number():
    assert extract_answer("He has <<2*3=6>>6.\n#### 1,234", "gsm8k") == "1234"
    assert extract_answer("#### 5\n#### 7", "gsm8k") == "7"
    assert extract_answer("no marker", "gsm8k") is None
    assert extract_answer("step\nA: 18", "a_colon") == "18"
    assert extract_answer("A: 1\nmore\nA: 5,600", "a_colon") == "5600"
    assert extract_answer("A: (1,2)", "a_colon") == "(1,2)"
    assert extract_answer("no answer line", "a_colon") is None
    assert extract_answer("costs 1,250 then 3.5 dollars.", "last_number") == "3.5"
    assert extract_answer("total = -12,000", "last_number") == "-12000"
    assert extract_answer("nothing numeric", "last_number") is None


def test_auto_order_and_none():
    assert extract_answer("The answer is: 4\n#### 5", "auto") == "4"
    assert extract_answer(r"\boxed{3} The answer is: 4", "auto") == "3"
    assert extract_answer("blah\n#### 5\nA: 6", "auto") == "5"
    assert extract_answer("blah\nA: 6", "auto") == "6"
    assert extract_answer("I think it is 7", "auto") is None
    assert extract_answer(None, "auto") is None


def test_numinamath_row_boxed():
    [row] = _jsonl(_data("format_samples/numinamath_cot_row0_from_card.jsonl"))
    assert extract_answer(row["solution"], "boxed") == r"\frac{13}{6}"


# ------------------------------------------------------------------------------------------------
# The pool
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout_s=5.0) as v:
        yield v


@pytest.mark.parametrize(
    ("gold", "pred", "status"),
    [
        (r"\frac{1}{2}", "0.5", "correct"),
        (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", "correct"),
        ("5,600", "5600", "correct"),
        ("18", "18.00", "correct"),
        ("18", "18 dollars", "correct"),
        ("5", "5 million", "incorrect"),
        ("18", "17", "incorrect"),
        (r"\text{(C)}", "C", "correct"),
        ("x^2+2x", "x(x+2)", "correct"),
        (r"\{1,2\}", r"\{2,1\}", "correct"),
        ("[1,2)", "(1,2)", "incorrect"),
        ("1/3", "0.3333", "incorrect"),
        (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", "correct"),
    ],
)
def test_verify_semantics(verifier, gold, pred, status):
    [r] = verifier.verify_many([(gold, pred)])
    assert r.status == status, r


def test_unverifiable_and_order(verifier):
    pairs = [("3", "3"), (None, "3"), ("3", None), ("  ", "3"), ("3", ""), ("4", "5"), ("7", "7")]
    results = verifier.verify_many(pairs)
    assert [r.status for r in results] == [
        "correct", "unverifiable", "unverifiable", "unverifiable", "unverifiable", "incorrect", "correct",
    ]
    assert results[1].detail == "no gold answer"
    assert results[2].detail == "no extractable answer"
    assert all(isinstance(r, VerifyResult) and r.status in STATUSES for r in results)
    assert verifier.verify_many([]) == []


def test_verify_answers_one_shot():
    results = verify_answers([("2", "2"), ("2", "3"), (None, "2")], workers=1, timeout_s=5.0)
    assert [r.status for r in results] == ["correct", "incorrect", "unverifiable"]
    assert results[1].pred_parsed == "3" and results[1].gold_parsed == "2"


def test_length_cap():
    long = "1+" * 600 + "1"
    with Verifier(workers=1, max_chars=1000, warmup=False) as v:
        results = v.verify_many([("1201", long), (long, "1"), ("2", "2")])
    assert [r.status for r in results] == ["unverifiable", "unverifiable", "correct"]
    assert results[0].detail == results[1].detail == "too long"


def test_tower_exponent_times_out_and_pool_recovers():
    pairs = [("5", "5"), ("5", TOWER), ("6", "6"), (r"\frac{1}{2}", "0.5"), ("7", "8")]
    t0 = time.monotonic()
    with Verifier(workers=1, timeout_s=1.0, warmup=False) as v:
        results = v.verify_many(pairs)
        again = v.verify_many([("1", "1")])  # still usable afterwards
    assert time.monotonic() - t0 < 15
    assert [r.status for r in results] == ["correct", "timeout", "correct", "correct", "incorrect"]
    assert again[0].status == "correct"


def slow_check(gold: str, pred: str) -> VerifyResult:
    """A check that blocks SIGALRM and sleeps on "slow": only a hard kill can stop it."""
    if pred == "slow":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    if pred == "crash":
        os._exit(3)
    return check_pair(gold, pred)


def test_hung_worker_is_killed_and_replaced():
    pairs = [("1", "1"), ("2", "slow"), ("3", "3"), ("4", "5"), ("5", "slow"), ("6", "6")] + [
        (str(i), str(i)) for i in range(20)
    ]
    t0 = time.monotonic()
    with Verifier(workers=2, timeout_s=0.5, kill_grace_s=0.3, check=slow_check, warmup=False) as v:
        results = v.verify_many(pairs)
        pids = [w.proc.pid for w in v._pool]
        assert v.restarts == 2
        assert all(w.proc.is_alive() for w in v._pool)
    assert time.monotonic() - t0 < 20
    statuses = [r.status for r in results]
    assert statuses[:6] == ["correct", "timeout", "correct", "incorrect", "timeout", "correct"]
    assert statuses[6:] == ["correct"] * 20
    assert "killed" in results[1].detail
    for pid in pids:  # close() stopped the replacements too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_crashing_worker_gives_error_and_others_continue():
    pairs = [("1", "1"), ("2", "crash"), ("3", "3"), ("4", "4")]
    with Verifier(workers=1, timeout_s=2.0, check=slow_check, warmup=False) as v:
        results = v.verify_many(pairs)
    assert [r.status for r in results] == ["correct", "error", "correct", "correct"]
    assert "exit code 3" in results[1].detail


def test_parent_stays_light_and_workers_are_subprocesses():
    """workers=1 still runs in a subprocess: the caller never imports math-verify or sympy."""
    code = (
        "import sys\n"
        "from cftdata.verify import verify_answers\n"
        "r = verify_answers([('\\\\frac{1}{2}', '0.5')], workers=1)\n"
        "assert r[0].status == 'correct', r\n"
        "assert 'math_verify' not in sys.modules and 'sympy' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_works_from_a_thread():
    """No signals in the caller: a Verifier can be used from a worker thread."""
    out: list = []

    def job() -> None:
        with Verifier(workers=1, warmup=False) as v:
            out.extend(v.verify_many([("4", "4.0"), ("4", "5")]))

    t = threading.Thread(target=job)
    t.start()
    t.join(60)
    assert [r.status for r in out] == ["correct", "incorrect"]


def test_close_stops_workers_and_rejects_use():
    v = Verifier(workers=2, warmup=False)
    v.start()
    procs = [w.proc for w in v._pool]
    assert all(p.is_alive() for p in procs)
    v.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        v.verify_many([("1", "1")])


def test_keyboard_interrupt_kills_workers(monkeypatch):
    v = Verifier(workers=1, warmup=False)
    v.start()
    procs = [w.proc for w in v._pool]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Verifier, "_pump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        v.verify_many([("1", "1")])
    assert not any(p.is_alive() for p in procs)
    monkeypatch.undo()
    assert v.verify_many([("2", "2")])[0].status == "correct"  # restarts on the next call
    v.close()


# ------------------------------------------------------------------------------------------------
# Accuracy on real data
# ------------------------------------------------------------------------------------------------


def test_gsm8k_example_model_solutions_agree_with_labels(verifier):
    rows = _jsonl(_data("gsm8k/example_model_solutions.jsonl"))
    pairs, labels = [], []
    for row in rows:
        gold = extract_answer(row["ground_truth"], "a_colon")
        assert gold is not None
        for model in GSM8K_MODELS:
            pairs.append((gold, extract_answer(row[model]["solution"], "a_colon")))
            labels.append(row[model]["is_correct"])
    results = verifier.verify_many(pairs)
    agree = sum(r.is_correct == label for r, label in zip(results, labels, strict=True))
    assert len(pairs) == 4 * 1319
    assert agree / len(pairs) >= 0.99, f"agreement {agree}/{len(pairs)}"
    assert not [r for r in results if r.status in ("timeout", "error")]


def test_math500_boxed_solutions_verify(verifier):
    rows = _jsonl(_data("math500/test.jsonl"))
    pairs = [(row["answer"], extract_answer(row["solution"], "boxed")) for row in rows]
    results = verifier.verify_many(pairs)
    bad = [(p, r) for p, r in zip(pairs, results, strict=True) if r.status != "correct"]
    assert len(rows) == 500
    assert not bad, bad[:5]
