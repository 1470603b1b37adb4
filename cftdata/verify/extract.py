"""Final-answer extraction: named rules that pull the raw answer string out of a solution text.

Each rule is a function ``(text) -> str | None`` registered in :data:`ANSWER_RULES`; look one up by
name through :func:`extract_answer`. Rules return the *raw* answer (whitespace, one trailing period
and surrounding ``$``/``\\(...\\)`` stripped), not a normalised one: comparing answers is the job of
:mod:`cftdata.verify.pool`.

Rules:

``boxed``
    The last brace-balanced ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces and escaped ``\\{``
    ``\\}`` are handled), or the ``\\boxed 5`` form. NuminaMath, MATH, most model outputs.
``answer_is``
    The rest of the line after the last "The answer is:" / "The answer is" (case-insensitive, also
    "The final answer is"). MetaMathQA.
``gsm8k``
    The rest of the line after the last ``#### ``, commas removed. GSM8K references.
``a_colon``
    The last line that starts with ``A:``, e.g. ``A: 18`` (GSM8K example model solutions);
    thousands separators in a plain number are removed.
``last_number``
    The last number in the text (thousands separators removed).
``auto``
    ``boxed``, then ``answer_is``, then ``gsm8k``, then ``a_colon``; ``None`` if none matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cftdata.registry import Registry

__all__ = ["ANSWER_RULES", "AnswerRule", "extract_answer", "last_boxed"]

AnswerRule = Callable[[str], str | None]

#: Name -> rule function ``(text: str) -> str | None``.
ANSWER_RULES: Registry[AnswerRule] = Registry("answer rule")

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANSWER_IS_RE = re.compile(r"the\s+(?:final\s+)?answer\s+is\b\s*:?", re.IGNORECASE)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_A_COLON_RE = re.compile(r"^[ \t]*A:[ \t]*([^\n]*)", re.MULTILINE)
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _clean(answer: str | None) -> str | None:
    """Strip whitespace, one trailing period and surrounding math delimiters; ``None`` if empty."""
    if answer is None:
        return None
    s = answer.strip()
    for _ in range(3):  # e.g. "$5$." -> "$5$" -> "5"
        before = s
        if s.endswith(".") and not s.endswith(".."):
            s = s[:-1].rstrip()
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
                break
        if s == before:
            break
    return s or None


def _balanced_group(text: str, open_at: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``open_at``; ``None`` if it never closes.

    A backslash escapes the next character, so ``\\{`` and ``\\}`` do not count.
    """
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last brace-balanced ``\\boxed{...}``/``\\fbox{...}`` (or ``\\boxed 5``) in ``text``.

    Occurrences whose braces never close (a truncated response) are skipped. Returns the content
    unstripped of math delimiters; ``None`` when there is no usable box.
    """
    for m in reversed(list(_BOXED_RE.finditer(text))):
        j = m.end()
        k = j
        while k < len(text) and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "{":
            end = _balanced_group(text, k)
            if end is not None:
                return text[k + 1 : end - 1]
        elif k > j:  # "\boxed 5": the next token
            token = re.match(r"[^\s$]+", text[k:])
            if token:
                return token.group(0)
    return None


def _unbox(answer: str | None) -> str | None:
    """``\\boxed{X}`` (the whole answer) -> ``X``; anything else unchanged."""
    if answer and _BOXED_RE.match(answer):
        inner = last_boxed(answer)
        if inner is not None:
            return inner
    return answer


def _drop_thousands(answer: str | None) -> str | None:
    """``"5,600"`` -> ``"5600"`` when the whole answer is a number with thousands separators."""
    if answer and _THOUSANDS_RE.fullmatch(answer):
        return answer.replace(",", "")
    return answer


@ANSWER_RULES.register("boxed")
def rule_boxed(text: str) -> str | None:
    """The last brace-balanced ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``)."""
    return _clean(last_boxed(text))


@ANSWER_RULES.register("answer_is")
def rule_answer_is(text: str) -> str | None:
    """The rest of the line after the last "The answer is:" / "The answer is" (MetaMathQA)."""
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].split("\n", 1)[0]
    return _clean(_unbox(_clean(rest)))


@ANSWER_RULES.register("gsm8k")
def rule_gsm8k(text: str) -> str | None:
    """The rest of the line after the last ``#### `` with commas removed (GSM8K references)."""
    matches = _GSM8K_RE.findall(text)
    if not matches:
        return None
    return _clean(matches[-1].replace(",", ""))


@ANSWER_RULES.register("a_colon")
def rule_a_colon(text: str) -> str | None:
    """The last line of the form ``A: <answer>`` (thousands separators dropped from plain numbers)."""
    matches = _A_COLON_RE.findall(text)
    if not matches:
        return None
    return _drop_thousands(_clean(matches[-1]))


@ANSWER_RULES.register("last_number")
def rule_last_number(text: str) -> str | None:
    """The last number in the text (integers, decimals, thousands separators removed)."""
    matches = _NUMBER_RE.findall(text)
    if not matches:
        return None
    return matches[-1].replace(",", "")


_AUTO_ORDER = ("boxed", "answer_is", "gsm8k", "a_colon")


@ANSWER_RULES.register("auto")
def rule_auto(text: str) -> str | None:
    """``boxed``, then ``answer_is``, then ``gsm8k``, then ``a_colon``; ``None`` if none matches."""
    for name in _AUTO_ORDER:
        answer = ANSWER_RULES.get(name)(text)
        if answer is not None:
            return answer
    return None


def extract_answer(text: str | None, rule: str) -> str | None:
    """Extract the raw final answer from ``text`` with the named rule (see :data:`ANSWER_RULES`).

    Args:
        text: A solution or reference text; ``None`` gives ``None``.
        rule: One of ``boxed``, ``answer_is``, ``gsm8k``, ``a_colon``, ``last_number``, ``auto``
            (or any rule registered later).

    Returns:
        The answer string (whitespace, a trailing period and surrounding ``$`` stripped), or
        ``None`` if the rule finds no answer.

    Raises:
        cftdata.errors.CftdataError: ``rule`` is not a registered rule name.

    Example:
        >>> extract_answer(r"so $x = \\boxed{\\frac{1}{2}}$.", "boxed")
        '\\\\frac{1}{2}'
    """
    fn = ANSWER_RULES.get(rule)
    if text is None:
        return None
    return fn(text)
