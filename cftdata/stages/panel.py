"""panel: several teachers on the same response (``teacher`` is a list): how far they agree, and which critiques
to keep.

Every response's critiques sit in the shard that generated it (the critique stage fans out within a shard),
so the stage groups a shard's rows by ``response_id``. For the manifest, the card and ``cftdata inspect`` it
counts, for each pair of teachers, the responses both judged (right or wrong) and how often they agreed
(with Cohen's kappa), and, when ``verify`` is on, each teacher against the verifier (right = correct, wrong =
incorrect). ``panel.keep`` selects with it: ``majority`` keeps the critiques whose verdict is the strict
majority of that response's verdicts (a tie keeps none), ``verifier`` keeps the critiques whose verdict
matches the verifier's status. The other critiques are rejects with their reason. In a dry run the critiques
are stand-ins with no verdict: they all go on (the selection cannot be known before the build).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any

from cftdata.backends.estimate import is_estimate
from cftdata.recipe import model_label
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage

DECIDED = ("right", "wrong")
MATCHES_VERIFIER = {("right", "correct"), ("wrong", "incorrect")}


def majority_verdict(verdicts: list[str]) -> str | None:
    """The verdict given by more than half of ``verdicts`` (None: no strict majority)."""
    if not verdicts:
        return None
    top, n = Counter(verdicts).most_common(1)[0]
    return top if n * 2 > len(verdicts) else None


def cohen_kappa(cells: Counter) -> float | None:
    """Cohen's kappa of a 2x2 table keyed (verdict of a, verdict of b) over right/wrong."""
    n = sum(cells.values())
    if not n:
        return None
    observed = (cells[("right", "right")] + cells[("wrong", "wrong")]) / n
    a_right = (cells[("right", "right")] + cells[("right", "wrong")]) / n
    b_right = (cells[("right", "right")] + cells[("wrong", "right")]) / n
    expected = a_right * b_right + (1 - a_right) * (1 - b_right)
    return round((observed - expected) / (1 - expected), 4) if expected < 1 else None


@STAGES.register("panel")
class PanelStage(Stage):
    name = "panel"

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.critiques and (recipe.panel is not None or len(recipe.teachers) > 1)

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.keep = ctx.recipe.panel.keep if ctx.recipe.panel else "all"
        self.verify = ctx.recipe.verify is not None
        self.labels = [model_label(t) for t in ctx.recipe.teachers]
        self.pairs: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.vs_verifier: dict[str, Counter] = defaultdict(Counter)
        self.majority: Counter = Counter()
        self.kept_by: Counter = Counter()

    def process(self, rows: list[Row]) -> StageOutput:
        groups: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            groups[row.get("response_id") or row["id"]].append(row)
        out, rejects = [], []
        for group in groups.values():
            self._count(group)
            verdicts = [r.get("verdict", "unknown") for r in group]
            major = majority_verdict(verdicts)
            self.majority[major or "tie"] += 1
            for row, v in zip(group, verdicts, strict=True):
                # a dry run's stand-in critique has no verdict to select on: it goes on, as verify lets them
                reason = None if is_estimate(row.get("critique")) else self._reason(row, v, major)
                if reason is None:
                    out.append(row)
                    self.kept_by[row.get("teacher")] += 1
                else:
                    rejects.append(Reject(row["id"], self.name, *reason, row))
        return StageOutput(out, rejects)

    def _reason(self, row: Row, verdict: str, major: str | None) -> tuple[str, str] | None:
        if self.keep == "majority":
            if major is None:
                return "no_majority", "the teachers' verdicts on this response have no strict majority"
            if verdict != major:
                return "not_majority", f"teacher says {verdict}, the majority says {major}"
        elif self.keep == "verifier":
            status = row.get("verify_status", "unverifiable")
            if (verdict, status) not in MATCHES_VERIFIER:
                return "disagrees_with_verifier", f"teacher says {verdict}, verifier says {status}"
        return None

    def _count(self, group: list[Row]) -> None:
        by_teacher = {r.get("teacher"): r.get("verdict", "unknown") for r in group}
        for a, b in itertools.combinations(self.labels, 2):
            va, vb = by_teacher.get(a), by_teacher.get(b)
            if va in DECIDED and vb in DECIDED:
                self.pairs[(a, b)][(va, vb)] += 1
        if self.verify:
            status = group[0].get("verify_status", "unverifiable")
            for teacher, v in by_teacher.items():
                if v in DECIDED and status in ("correct", "incorrect"):
                    self.vs_verifier[teacher][(v, status) in MATCHES_VERIFIER] += 1

    def summary(self) -> dict[str, Any]:
        pairwise = []
        for (a, b) in itertools.combinations(self.labels, 2):
            cells = self.pairs.get((a, b), Counter())
            n = sum(cells.values())
            agree = cells[("right", "right")] + cells[("wrong", "wrong")]
            pairwise.append({"a": a, "b": b, "both_decided": n, "agree": agree,
                             "agreement": round(agree / n, 4) if n else None, "kappa": cohen_kappa(cells),
                             "cells": {f"{x}/{y}": cells[(x, y)] for x in DECIDED for y in DECIDED}})
        verifier = None
        if self.verify:
            verifier = []
            for t in self.labels:
                c = self.vs_verifier.get(t, Counter())
                n = c[True] + c[False]
                verifier.append({"teacher": t, "decided": n, "agree": c[True],
                                 "agreement": round(c[True] / n, 4) if n else None})
        return {"teachers": self.labels, "keep": self.keep, "pairwise": pairwise, "vs_verifier": verifier,
                "responses_by_majority": dict(self.majority), "kept_by_teacher": dict(self.kept_by)}
