"""The CFT authors' answer extraction and grading, re-implemented (``--harness paper`` / ``--grader paper``).

The CFT paper's math scores come from TIGER-AI-Lab/CritiqueFineTuning ``tools/evaluate_math`` (``parser.py``,
``grader.py``), a fork of the QwenLM/Qwen2.5-Math evaluation harness. This module reproduces their rules; the
code is written from a reading of theirs (no code copied). What they do, step by step:

Extraction (:func:`extract_answer`), first rule that applies:

1. Minerva's "final answer is $...$. I hope" sentence;
2. the content of the last ``boxed`` (brace-balanced; ``\\boxed 5`` form up to the next ``$``);
3. the text after the last "he answer is";
4. the text after the last "final answer is";
5. the last number in the text (commas removed).

The result is cleaned (newlines, a leading ``:``, a trailing ``.`` or ``/``) and normalised by
:func:`normalize` (their ``strip_string``: units, ``\\text{}``, ``\\left``/``\\right``, ``dfrac``, degrees, percent
signs, dollar signs, number words, ``x=`` prefixes, ``\\frac12`` and ``a/b`` to ``\\frac{a}{b}``...). The harness
normalises twice (once in the extractor, once after it): so does :func:`extract_answer`. Minerva-Math keeps units.

Reference answers (:func:`reference_answer`) follow the harness's ``parse_ground_truth``: MATH, MATH-500 and
Minerva-Math extract from the reference *solution* with the same rules; GSM8K takes the text after ``####``;
OlympiadBench ``final_answer[0]`` without ``$``; AIME, AMC and TheoremQA the ``answer`` field.

Comparison (:func:`math_equal`, their ``math_equal(prediction, reference)``):

1. equal strings (case-insensitive); a letter reference and the prediction's last letter;
2. both numbers: equal within a relative tolerance of 1e-4, also against reference/100 and reference*100
   (percent variants); two numbers that differ are never compared further;
3. brackets and braces ignored; tuples and intervals element by element; matrices cell by cell;
4. equations: ``a=b`` against ``c=d`` as ``a-(b)`` against ``c-(d)`` (or its negation); ``x=5`` against ``5``;
5. sympy: equal strings, ``a.equals(b)`` or ``simplify(a-b)==0``, equations by ``|lhs-rhs|``, equal numeric
   values (rel. 1e-4), equal matrices rounded to 3 places.

The CFT fork adds five lenient checks the upstream Qwen2.5-Math grader does not have (``lenient=True``, grader
``paper``; grader ``qwen25-math`` leaves them out): numbers equal when rounded to ONE decimal place (their
``round_to_two_decimals``), ``a\\times10^{n}`` / ``3e8`` read as numbers, equations compared by their right-hand
sides, ``10^{n}`` forms read as decimals, and scientific numbers equal to their least number of significant
digits.

Deviations, all deliberate: sympy's ``parse_latex`` needs ANTLR 4.11 and is skipped (``latex2sympy2_extended``,
math-verify's parser, takes its place, as the harness's own ``latex2sympy`` fallback did); ``parse_expr`` (which
evaluates Python) only sees strings made of math characters; outputs that end in an unexecuted code block are
not executed (the harness runs them as programs); an exception is ``error`` instead of ending the run. The
comparison runs in :class:`cftdata.verify.pool.Verifier` workers with a hard per-item timeout (the harness: a
pebble pool, 3 s per item, timeout = wrong).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from cftdata.verify.pool import CORRECT, INCORRECT, UNVERIFIABLE, VerifyResult

__all__ = [
    "STRIP_EXCEPTIONS",
    "check_paper",
    "check_qwen25",
    "choice_letter",
    "clean_output",
    "extract_answer",
    "math_equal",
    "normalize",
    "reference_answer",
    "word_number",
]

#: Benchmarks whose answers keep their units (the harness's ``STRIP_EXCEPTIONS``).
STRIP_EXCEPTIONS = frozenset({"minerva_math", "carp_en"})

# Unit words removed from answers (the MathQA list the harness carries), matched as regular expressions
# between non-word characters; plurals ("s" appended) are removed too.
_UNITS = (
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men", "soldier", "pie", "bc",
    "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2",
    "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am", "pm",
    "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number",
    "kmph", "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp",
    "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm",
    "mm", "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface",
    "litre", "pi sq m", "s .", "metre", "meter", "inch",
)  # fmt: skip
_UNIT_RES = tuple(re.compile(r"(^|\W)" + u + r"($|\W)") for u in (*_UNITS, *(u + "s" for u in _UNITS)))

# -- number words (word2number's reading: number words anywhere in the text, other words ignored) ------------

_SMALL = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"))}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(
    ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"))}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = {**_SMALL, **_TENS, "hundred": 100, **_SCALES, "point": None}


def _group(words: list[str]) -> int:
    """A number below one thousand from its words ("two hundred five" -> 205)."""
    total = 0
    for w in words:
        total = max(total, 1) * 100 if w == "hundred" else total + (_SMALL.get(w) or _TENS.get(w) or 0)
    return total


def word_number(text: str) -> str:
    """``"twenty one"`` -> ``"21"``; digits-only strings lose leading zeros; anything else is returned unchanged.

    Like the ``word2number`` package the harness calls on every answer: hyphens are spaces, case is ignored,
    words that are not number words are skipped, and a string with no number word is left alone.
    """
    s = text.replace("-", " ").lower()
    if s.isdigit():
        try:
            return str(int(s))
        except ValueError:  # digits int() does not read ("²")
            return text
    words = [w for w in s.strip().split() if w in _NUMBER_WORDS]
    if not words or any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        return text
    decimals: list[str] = []
    if "point" in words:
        at = words.index("point")
        words, decimals = words[:at], words[at + 1:]
    total, chunk = 0, []
    for w in words:
        if w in _SCALES:
            total += max(_group(chunk), 1) * _SCALES[w]
            chunk = []
        else:
            chunk.append(w)
    total += _group(chunk)
    if decimals:
        digits = "".join(str(_SMALL[w]) for w in decimals if w in _SMALL and _SMALL[w] < 10)
        return str(float(f"{total}.{digits or 0}"))
    return str(total)


# -- normalisation (the harness's strip_string) --------------------------------------------------------------


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``."""
    head, *rest = s.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part.startswith("{"):
            out += part
        elif len(part) < 2:
            return s
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _fix_a_slash_b(s: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}`` when both sides are integers (or contain ``sqrt``)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a, b = parts
    try:
        a2 = a if "sqrt" in a else int(a)
        b2 = b if "sqrt" in b else int(b)
    except ValueError:
        return s
    return f"\\frac{{{a2}}}{{{b2}}}" if s == f"{a2}/{b2}" else s


def normalize(answer: Any, skip_unit: bool = False) -> str:
    """The harness's answer normalisation (``strip_string``), step for step."""
    s = str(answer).strip().replace("\n", "").rstrip(".")
    s = s.replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    no_unit = re.sub(r"\\text\{.*?\}$", "", s).strip()
    if no_unit and no_unit != s:
        s = no_unit
    if not skip_unit:
        for _ in range(2):
            for unit in _UNIT_RES:
                t = unit.sub(r"\1\2", s)
                if t:
                    s = t
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = word_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(s))


# -- extraction ----------------------------------------------------------------------------------------------


def _after_last_boxed(text: str) -> str:
    """The content of the last ``boxed``: brace-balanced, or (``\\boxed 5``) up to the next ``$``."""
    rest = text.split("boxed")[-1]
    if not rest:
        return ""
    if rest[0] != "{":
        return rest.split("$")[0].strip()
    depth, out = 1, []
    for c in rest[1:]:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        out.append(c)
    return "".join(out)


_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")


def _raw_answer(text: str) -> str:
    text = text.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        return text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    if "boxed" in text:
        return _after_last_boxed(text)
    for marker in ("he answer is", "final answer is"):
        if marker in text:
            return text.split(marker)[-1].strip()
    if "答案是" in text:
        return text.split("答案是")[1].strip().split("\n\n")[0].strip()
    numbers = _LAST_NUMBER.findall(text.replace(",", ""))
    return numbers[-1] if numbers else ""


def _extract_once(text: str, benchmark: str) -> str:
    """The harness's ``extract_answer``: the raw answer, cleaned and normalised once."""
    pred = re.sub(r"\n\s*", "", _raw_answer(text))
    if pred.startswith(":"):
        pred = pred[1:]
    if pred.endswith("."):
        pred = pred[:-1]
    if pred.endswith("/"):
        pred = pred[:-1]
    return normalize(pred, skip_unit=benchmark in STRIP_EXCEPTIONS)


def extract_answer(text: str, benchmark: str = "math") -> str:
    """The predicted answer of a model output, normalised as the harness does (twice: in its extractor and
    again after it)."""
    return normalize(_extract_once(text, benchmark), skip_unit=benchmark in STRIP_EXCEPTIONS)


def clean_output(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """The harness's post-processing of a completion: stripped, and cut at each stop string in turn."""
    code = text.rstrip().strip()
    for word in stop:
        if word in code:
            code = code.split(word)[0].strip()
    return code


_CHOICE_TRIGGERS = ("choice is", "answer is")


def choice_letter(output: str) -> str:
    """The harness's ``choice_answer_clean`` for a letter reference: the letter after "answer is", else the
    last A-E letter of the output."""
    pred = output.strip("\n")
    if any(pred.count(t) > 1 for t in _CHOICE_TRIGGERS):
        pred = pred.split("\n\n")[0]
    parts = re.split("|".join(_CHOICE_TRIGGERS), pred)
    flagged = len(parts) > 1
    if flagged:
        pred = parts[-1]
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", pred.upper()) or [pred.strip().strip(".")]
    pred = letters[0] if flagged else letters[-1]
    return pred.rstrip(".").rstrip("/")


def fix_choice_prediction(pred: str, reference: str, output: str) -> str:
    """The harness's letter handling after extraction: a letter reference takes the output's letter."""
    abcde = set("ABCDE")
    if reference in abcde and pred not in abcde:
        return choice_letter(output)
    if set(reference) <= abcde and not set(pred) <= abcde:
        return "".join(c for c in pred if c in abcde)
    return pred


# -- reference answers -----------------------------------------------------------------------------------------


def _solution_answer(row: dict[str, Any], benchmark: str) -> str:
    solution = row.get("solution")
    if isinstance(solution, list):
        solution = solution[-1] if solution else None
    if solution:
        return _extract_once(str(solution), benchmark)
    return str(row.get("answer") or "")  # Hub copies without solutions (math-ai/minervamath)


def _after_hashes(row: dict[str, Any], benchmark: str) -> str:
    return str(row.get("answer") or "").split("####")[-1]


def _first_final_answer(row: dict[str, Any], benchmark: str) -> str:
    fa = row.get("final_answer")
    if isinstance(fa, str):
        try:
            fa = json.loads(fa)
        except ValueError:
            fa = [fa]
    return str(fa[0]).strip("$") if fa else ""


def _answer_field(row: dict[str, Any], benchmark: str) -> str:
    value = row.get("answer", row.get("Answer"))
    return "" if value is None else str(value)


#: Benchmark name -> how the harness reads its reference answer (``parse_ground_truth``).
_REFERENCE: dict[str, Callable[[dict[str, Any], str], str]] = {
    "math": _solution_answer, "math500": _solution_answer, "math_train": _solution_answer,
    "minerva_math": _solution_answer, "gsm8k": _after_hashes, "olympiadbench": _first_final_answer,
    "aime24": _answer_field, "amc23": _answer_field, "theoremqa": _answer_field,
}


def reference_answer(benchmark: str, row: dict[str, Any]) -> str:
    """The reference answer of a benchmark row, read and normalised as the harness does."""
    raw = _REFERENCE.get(benchmark, _answer_field)(row, benchmark)
    if benchmark in STRIP_EXCEPTIONS:
        return raw.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    return normalize(raw)


# -- comparison ------------------------------------------------------------------------------------------------


def _parse_digits(s: Any) -> float | None:
    t = re.sub(",", "", str(s))
    try:
        return float(t)
    except ValueError:
        if t.endswith("%"):
            t = t[:-1].removesuffix("\\")
            try:
                return float(t) / 100
            except ValueError:
                pass
    return None


def _round_one_place(s: str) -> float | None:
    try:
        return round(float(s.replace(",", "").replace("\\", "")), 1)
    except ValueError:
        return None


def _choice_clean(pred: str) -> str:
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", pred.upper()) or [pred.strip().strip(".")]
    return letters[-1].rstrip(".").rstrip("/")


def _str_to_pmatrix(s: str) -> str:
    rows = re.findall(r"\{.*,.*\}", s.strip())
    return ", ".join("\\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + "\\end{pmatrix}" for m in rows)


def _sci_number(text: str) -> Any:
    """``3e8`` / ``1.5\\times10^{3}`` as a number (an int when whole); anything else unchanged."""
    t = str(text)
    if "e" in t.lower().replace("times", ""):
        try:
            x = float(t)
        except ValueError:
            return text
        return int(x) if x.is_integer() else x
    m = re.search(r"(\d+\.?\d*?)\\times10\^{?([+-]?\d+)}?", t)
    if m:
        x = float(m.group(1)) * (10 ** int(m.group(2)))
        return int(x) if x.is_integer() else x
    return text


def _as_decimal(text: str) -> str:
    def fmt(x: float) -> str:
        return format(x, "f").rstrip("0").rstrip(".")

    t = str(text)
    if "e" in t.lower():
        try:
            return fmt(float(t))
        except ValueError:
            return text
    m = re.search(r"10\^{([+-]?\d+)}", t)
    if m:
        return fmt(float(1) * (10 ** int(m.group(1))))
    m = re.search(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}", t)
    if m:
        return fmt(float(m.group(1)) * (10 ** int(m.group(2))))
    return text


def _significant_equal(a: str, b: str) -> bool:
    """Scientific numbers equal to their least number of significant digits."""

    def sci_to_e(t: str) -> str:
        return re.sub(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}\\",
                      lambda m: f"{float(m.group(1))}e{int(m.group(2))}", t.replace(",", ""))

    def value(s: str) -> float:
        if "e" in s.lower():
            return float(s)
        s = s.replace("\\", "").replace(",", "")
        m = re.search(r"(\d+\.?\d*?)times10\^{([+-]?\d+)}", s)
        return float(m.group(1)) * (10 ** int(m.group(2))) if m else float(s)

    def digits(s: str) -> int:
        s = s.lower()
        if "e" in s:
            s = f"{float(s):f}"
        return sum(ch.isdigit() for ch in s.rstrip("0").rstrip("."))

    a, b = sci_to_e(a), sci_to_e(b)
    try:
        x, y = value(a), value(b)
    except ValueError:
        return False
    scale = max(abs(x), abs(y))
    if scale == 0:
        return abs(x - y) < 1e-10
    return abs(x - y) / scale <= 0.5 * 10 ** (-(min(digits(a), digits(b)) - 1))


_SAFE_EXPR = re.compile(r"[A-Za-z0-9_\s+\-*/^().,=<>\[\]{}|!]*")
_UNSAFE_EXPR = re.compile(r"__|lambda|import|exec|eval|open|getattr|globals|locals")


def _sympy_parse(s: str) -> Any:
    from sympy.parsing.sympy_parser import parse_expr

    candidates = (s.replace("\\\\", "\\"), s)
    for text in candidates:
        if _SAFE_EXPR.fullmatch(text) and not _UNSAFE_EXPR.search(text):
            try:
                return parse_expr(text)
            except Exception:
                pass
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    config = ConversionConfig(interpret_as_mixed_fractions=False, lowercase_symbols=False)
    for text in candidates:
        try:
            return latex2sympy(text, conversion_config=config)
        except Exception:
            pass
    return s


def symbolic_equal(a: str, b: str) -> bool:
    """sympy equality of two answers (the harness's ``symbolic_equal``)."""
    from sympy import N, simplify

    x, y = _sympy_parse(a), _sympy_parse(b)
    try:
        if str(x) == str(y) or x == y:
            return True
    except Exception:
        pass
    try:
        if x.equals(y) or simplify(x - y) == 0:
            return True
    except Exception:
        pass
    try:
        if (abs(x.lhs - x.rhs)).equals(abs(y.lhs - y.rhs)):
            return True
    except Exception:
        pass
    try:
        if math.isclose(float(N(y)), float(N(x)), rel_tol=1e-4):
            return True
    except Exception:
        pass
    try:
        if x.shape == y.shape and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3))):
            return True
    except Exception:
        pass
    return False


_BRACKETED = re.compile(r"(\(|\[).+(\)|\])")
_MATRIX_OPEN = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_CLOSE = ("\\end{pmatrix}", "\\end{bmatrix}")


def _is_matrix(s: str) -> bool:
    return s.startswith(_MATRIX_OPEN) and s.endswith(_MATRIX_CLOSE)


def _matrix_equal(pred: str, ref: str, lenient: bool) -> bool:
    def rows(s: str) -> list[str]:
        body = s[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")]
        return [line.strip() for line in body.split("\\\\") if line.strip()]

    p_rows, r_rows = rows(pred), rows(ref)
    if len(p_rows) != len(r_rows):
        return False
    for p_line, r_line in zip(p_rows, r_rows, strict=True):
        p_cells, r_cells = p_line.split("&"), r_line.split("&")
        if len(p_cells) != len(r_cells) or not all(
                math_equal(p, r, lenient=lenient) for p, r in zip(p_cells, r_cells, strict=True)):
            return False
    return True


def math_equal(prediction: Any, reference: Any, lenient: bool = True, include_percentage: bool = True) -> bool:
    """Is ``prediction`` the same answer as ``reference`` (both normalised strings)? See the module docstring.

    ``lenient`` adds the CFT fork's five extra checks (grader ``paper``); without it this is the upstream
    Qwen2.5-Math ``math_equal`` (grader ``qwen25-math``).
    """
    if prediction is None or reference is None:
        return False
    pred, ref = str(prediction), str(reference)
    if pred.strip().lower() == ref.strip().lower():
        return True
    if ref in ("A", "B", "C", "D", "E") and _choice_clean(pred) == ref:
        return True
    p_num, r_num = _parse_digits(pred), _parse_digits(ref)
    if p_num is not None and r_num is not None:
        if lenient and _round_one_place(pred) == _round_one_place(ref):
            return True
        targets = [r_num / 100, r_num, r_num * 100] if include_percentage else [r_num]
        return any(math.isclose(t, p_num, rel_tol=1e-4) for t in targets)
    if not pred:
        return False
    ref, pred = ref.strip(), pred.strip()
    if "pmatrix" in pred and "pmatrix" not in ref:
        ref = _str_to_pmatrix(ref)
    p_str, r_str = pred, ref
    if ((pred.startswith("[") and pred.endswith("]") and not ref.startswith("("))
            or (pred.startswith("(") and pred.endswith(")") and not ref.startswith("["))):
        p_str, r_str = p_str.strip("[]()"), r_str.strip("[]()")
    for ch in "{}()":
        p_str, r_str = p_str.replace(ch, ""), r_str.replace(ch, "")
    if p_str.lower() == r_str.lower():
        return True
    if _BRACKETED.match(pred) and _BRACKETED.match(ref):
        p_parts, r_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(
                math_equal(p, r, lenient, include_percentage) for p, r in zip(p_parts, r_parts, strict=True)):
            return True
    if _is_matrix(pred) and _is_matrix(ref) and _matrix_equal(pred, ref, lenient):
        return True
    if lenient and _sci_number(pred) == _sci_number(ref):
        return True
    if pred.count("=") == 1 and ref.count("=") == 1:
        pl, pr = pred.split("=")
        rl, rr = ref.split("=")
        p_eq, r_eq = f"{pl.strip()} - ({pr.strip()})", f"{rl.strip()} - ({rr.strip()})"
        if symbolic_equal(p_eq, r_eq) or symbolic_equal(f"-({p_eq})", r_eq):
            return True
    elif pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in ref:
        if math_equal(pred.split("=")[1], ref, lenient, include_percentage):
            return True
    elif (ref.count("=") == 1 and len(ref.split("=")[0].strip()) <= 2 and "=" not in pred
          and math_equal(pred, ref.split("=")[1], lenient, include_percentage)):
        return True
    if lenient:
        if ("=" in pred or "=" in ref) and math_equal(pred.split("=")[-1].replace("{", "("),
                                                      ref.split("=")[-1].replace("{", "("), lenient,
                                                      include_percentage):
            return True
        if _as_decimal(pred) == _as_decimal(ref):
            return True
    if symbolic_equal(pred, ref):
        return True
    if lenient:
        try:
            return _significant_equal(pred, ref)
        except Exception:
            return False
    return False


# -- pool check functions (module level: they are pickled into the Verifier workers) ---------------------------


def _check(gold: str, pred: str, lenient: bool) -> VerifyResult:
    if gold is None:
        return VerifyResult(UNVERIFIABLE, None, None, "no gold answer")
    ok = math_equal(pred, gold, lenient=lenient)
    return VerifyResult(CORRECT if ok else INCORRECT, pred, gold)


def check_paper(gold: str, pred: str) -> VerifyResult:
    """Grader ``paper``: the CFT fork's ``math_equal`` (with its lenient checks)."""
    return _check(gold, pred, lenient=True)


def check_qwen25(gold: str, pred: str) -> VerifyResult:
    """Grader ``qwen25-math``: the upstream Qwen2.5-Math ``math_equal``."""
    return _check(gold, pred, lenient=False)
