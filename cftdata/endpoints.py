"""The preflight of a recipe's model endpoints: ``cftdata check RECIPE`` and the dry run's preflight lines.

The endpoints are the ones the build would open: the stages that call models are built with an estimating
model layer (nothing is sent), and each distinct (backend, address, model) is probed once with
:meth:`~cftdata.backends.base.Backend.probe`: one minimal request (``spend``: what ``cftdata check`` does), or
what can be checked without spending (a models list, a batch list, the GGUF file: what the dry run shows). Each
endpoint gets one line: OK, or the exact problem and its fix. (A build's own preflight costs nothing extra: its
first paid request goes alone, see :class:`~cftdata.backends.breaker.CircuitBreaker`.)
"""

from __future__ import annotations

from dataclasses import dataclass

from cftdata.backends.base import Backend
from cftdata.backends.breaker import ProbeFailed, fix_for, public_address
from cftdata.backends.caller import ModelLayer, endpoint_of
from cftdata.errors import CftdataError
from cftdata.recipe import ModelSpec, Recipe


@dataclass
class EndpointCheck:
    """One endpoint's preflight: ``ok`` None when it was not checked (an API key not set, in a dry run)."""

    label: str
    backend: str
    model: str
    address: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        status = {True: "OK", False: "FAILED", None: "not checked"}[self.ok]
        detail = self.detail.removeprefix("OK, ").removeprefix("OK").removeprefix("not checked: ")
        return f"{self.label:<9} {self.backend}  {public_address(self.address)}  model {self.model!r}: {status}" + (
            f" ({detail})" if detail else "")


def probe_backend(backend: Backend, spend: bool, section: str | None = None) -> tuple[bool | None, str]:
    """(ok, what was found) for one backend: a problem comes with its fix; ok None when nothing could be checked
    without spending (no models list)."""
    try:
        found = backend.probe(spend)
        return (None if found.startswith("not checked") else True), found
    except ProbeFailed as e:
        detail = e.detail.strip().rstrip(".")
        return False, f"{e.kind.replace('_', ' ')}: {detail}. {fix_for(e.kind, endpoint_of(backend, section))}"
    except CftdataError as e:
        return False, str(e)


def recipe_models(recipe: Recipe) -> ModelLayer:
    """The model layer (estimating: nothing is sent, no key is read) with a caller opened for every model the
    build would call (``opened``: label -> (spec, caller)); the caller's backend tells its address."""
    from cftdata.executors import make_executor
    from cftdata.progress import Reporter
    from cftdata.stages import STAGE_ORDER, STAGES
    from cftdata.stages.base import BuildContext

    models = ModelLayer(None, estimate=True)
    executor = make_executor(recipe.run, dry_run=True)
    ctx = BuildContext(recipe=recipe, models=models, executor=executor, reporter=Reporter(quiet=True),
                       output_dir=recipe.output_dir)
    stages = []
    try:
        for name in STAGE_ORDER:  # only the stages that call models: the others may load data when built
            cls = STAGES.get(name) if name in STAGES else None
            if cls is not None and cls.calls_models and cls.enabled(recipe):
                stages.append(cls(ctx))
    finally:
        for st in stages:
            st.close()
        executor.close()
    return models


def endpoint_groups(models: ModelLayer) -> dict[tuple[str, str, str], list[str]]:
    """(backend, address, model) -> the labels of the callers that use that endpoint, in opening order."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for label, (spec, caller) in models.opened.items():
        groups.setdefault((spec.backend, caller.backend.address, spec.model), []).append(label)
    return groups


def check_recipe(recipe: Recipe) -> list[EndpointCheck]:
    """``cftdata check``: one minimal request per distinct (backend, address, model) of the recipe; one check
    per endpoint, labelled with every stage that uses it."""
    models = recipe_models(recipe)
    checks = []
    for (backend, address, model), group in endpoint_groups(models).items():
        spec = models.opened[group[0]][0]
        ok, detail = _probe_spec(spec, models.sections.get(group[0]))
        checks.append(EndpointCheck("+".join(group), backend, model, address, ok, detail))
    return checks


def _probe_spec(spec: ModelSpec, section: str | None) -> tuple[bool | None, str]:
    from cftdata.backends import make_backend

    try:
        backend = make_backend(spec)  # a missing API key is a problem here
    except CftdataError as e:
        return False, str(e)
    try:
        return probe_backend(backend, True, section)
    finally:
        backend.close()


def dry_run_checks(models: ModelLayer) -> list[EndpointCheck]:
    """What the dry run shows: each endpoint of the opened callers probed without spending (skipped when its API
    key is not set: a request without it proves nothing)."""
    checks: list[EndpointCheck] = []
    for (name, address, model), group in endpoint_groups(models).items():
        backend = models.opened[group[0]][1].backend
        if backend.key_env and backend.key_env in models.missing_keys:
            ok, detail = None, f"{backend.key_env} is not set"
        else:
            ok, detail = probe_backend(backend, False, models.sections.get(group[0]))
        checks.append(EndpointCheck("+".join(group), name, model, address, ok, detail))
    return checks


def format_checks(checks: list[EndpointCheck]) -> list[str]:
    """One line per endpoint."""
    return [c.line() for c in checks]
