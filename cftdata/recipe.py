"""The recipe: a versioned YAML file validated with pydantic (unknown keys are errors).

``load_recipe(path, overrides)`` reads the YAML, follows ``extends:`` (a base recipe, path relative
to the extending file; mappings merge key by key, anything else is replaced, ``null`` removes), applies ``--set
key.path=value`` overrides (values parsed as YAML), and validates. Every failure is a
:class:`~cftdata.errors.RecipeError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from cftdata.benchmarks import DEFAULT_DECONTAMINATION
from cftdata.errors import CftdataError, RecipeError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingParams(Strict):
    """Decoding parameters sent with every request (None = the backend's default)."""

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="passed through to the backend as is")

    def as_request_params(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump(exclude={"extra"}).items() if v is not None}
        out.update(self.extra)
        return out


class ModelSpec(Strict):
    """A model behind a backend: which backend, which model, how to reach it and how hard to push it."""

    backend: str = "openai"
    model: str = "gpt-4o-2024-11-20"
    base_url: str | None = None
    api_key_env: str | None = Field(
        default=None, description="name of the environment variable holding the API key (never the key)"
    )
    params: SamplingParams = Field(default_factory=SamplingParams)
    concurrency: int = Field(
        default=1024, gt=0,
        description="safety ceiling on requests in flight; the working number is sized from the rate limits and "
                    "the observed latency (1024 covers 3,000/min at 18 s or 10,000/min at 5 s per request)")
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=600, gt=0, description="per-request timeout")
    max_retries: int = Field(default=6, ge=0)
    stall_timeout_s: float = Field(default=900, gt=0, description="stop when no request finishes for this long")
    fail_fast_after: int = Field(
        default=8, ge=0,
        description="stop the build when this many calls in a row fail the same systemic way (key refused, model "
                    "not found, nothing listening, not the API answering) instead of rejecting every row; "
                    "0: never (and no preflight)")
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific settings")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        try:
            u = urlsplit(v)
            ok = u.scheme in ("http", "https") and bool(u.hostname) and (u.port is None or u.port > 0)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000/v1")
        return v


class SourceSpec(Strict):
    """Where rows come from and which fields hold what."""

    path: str | None = Field(default=None, description="local .jsonl/.json/.parquet file or a folder of them")
    hub: str | None = Field(default=None, description="Hugging Face Hub dataset id")
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    streaming: bool | None = Field(default=None, description="default: True for Hub sources")
    corpus: str = Field(default="generic", description="corpus adapter: field names and answer rules")
    name: str | None = Field(default=None, description="label of this source in ids and provenance")
    question: str | None = None
    response: str | None = None
    reference_solution: str | None = None
    answer: str | None = None
    meta: list[str] | None = Field(default=None, description="extra fields copied into meta")
    limit: int | None = Field(default=None, gt=0)
    sample: int | None = Field(default=None, gt=0, description="a seeded uniform sample of N rows (run.seed)")
    max_chars: int = Field(default=200_000, gt=0, description="longer question/response/solution -> reject")

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if bool(self.path) == bool(self.hub):
            raise ValueError("give exactly one of source.path (local file) or source.hub (Hub dataset id)")
        return self


class RespondSpec(ModelSpec):
    """The noisy-response generator: the corpus's own answers, or samples from a model."""

    mode: Literal["existing", "generate"] = "existing"
    label: str | None = Field(
        default=None, description="this generator's name in rows, ids and reports (default: backend:model)")
    n: int = Field(default=1, gt=0, description="responses sampled per question (generate mode)")
    prompt: str = Field(default="plain", description="solve prompt name or a YAML template file")
    backend: str = "local"
    model: str = "smollm2-135m"


class TeacherSpec(ModelSpec):
    """The teacher critic. ``backend: existing`` reuses critiques the source carries; ``none`` skips critiques
    (SFT baselines)."""

    prompt: str = Field(default="cft-paper", description="critique prompt name or a YAML template file")
    label: str | None = Field(
        default=None, description="this teacher's name in rows, ids and reports (default: backend:model)")
    verdict_constraint: str | None = Field(
        default=None, description="constrain the critique to end in 'Conclusion: right/wrong [END]': auto (llama.cpp "
                                  "grammar on the local backend, none elsewhere), gbnf, vllm, vllm-guided, sglang "
                                  "(see cftdata.verdict_constraints)")

    @model_validator(mode="after")
    def _constraint_fits_backend(self) -> TeacherSpec:
        from cftdata.verdict_constraints import VERDICT_CONSTRAINTS

        name = self.verdict_constraint
        if name in (None, "auto"):
            return self
        if name not in VERDICT_CONSTRAINTS:
            raise ValueError(f"verdict_constraint: unknown {name!r}; use auto, "
                             f"{', '.join(VERDICT_CONSTRAINTS.names())} (or leave it out)")
        c = VERDICT_CONSTRAINTS.get(name)
        if self.backend not in ("existing", "none") and self.backend not in c.backends:
            raise ValueError(f"verdict_constraint {name!r} is for {c.engines}; teacher.backend {self.backend!r} "
                             f"cannot send it (use auto, or a backend among {', '.join(c.backends)})")
        return self

    def resolved_verdict_constraint(self) -> str | None:
        """The verdict constraint dialect in effect: ``auto`` is ``gbnf`` on ``local`` and none elsewhere."""
        name = self.verdict_constraint
        if name == "auto":
            name = "gbnf" if self.backend == "local" else None
        return None if self.backend in ("existing", "none") else name

    def verdict_constraint_params(self) -> dict[str, Any]:
        """The request fields of the verdict constraint in effect (none: ``{}``)."""
        from cftdata.verdict_constraints import VERDICT_CONSTRAINTS

        name = self.resolved_verdict_constraint()
        return VERDICT_CONSTRAINTS.get(name).request_params(self.params.max_tokens, self.backend) if name else {}


#: Union tags of "one mapping or a list of them" fields (left out of the key paths in error messages).
_ONE, _MANY = "mapping", "list"


def _one_or_many(value: Any) -> str:
    return _MANY if isinstance(value, list) else _ONE


def one_or_many(model: type[BaseModel]) -> Any:
    """The annotation of a key that takes one mapping of ``model`` or a YAML list of them."""
    return Annotated[Union[Annotated[model, Tag(_ONE)], Annotated[list[model], Tag(_MANY)]],  # noqa: UP007
                     Discriminator(_one_or_many)]


def model_label(spec: ModelSpec) -> str:
    """A generator's or teacher's name in rows and reports: its ``label``, else ``backend:model``."""
    return getattr(spec, "label", None) or f"{spec.backend}:{spec.model}"


class RefineSpec(ModelSpec):
    """The refiner: after the critique, a model writes a refined response (critique-guided distillation)."""

    prompt: str = Field(default="refine", description="refine prompt name or a YAML template file")


class VerdictSpec(Strict):
    rule: str = Field(default="cftdata", description="cftdata (unknown class) or authors (unparseable -> wrong)")
    drop_unknown: bool = Field(default=False, description="reject critiques with no parseable verdict")
    keep: list[Literal["right", "wrong", "unknown"]] | None = Field(
        default=None, description="keep only rows with these verdicts (e.g. [right] for verified-SFT data)"
    )

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, v: str) -> str:
        from cftdata.verdicts import VERDICT_RULES

        if v not in VERDICT_RULES:
            raise ValueError(f"unknown verdict rule {v!r}; use one of {', '.join(VERDICT_RULES.names())}")
        return v

    @model_validator(mode="after")
    def _keep_reachable(self) -> VerdictSpec:
        if self.rule == "authors" and self.keep is not None and not set(self.keep) - {"unknown"}:
            raise ValueError("verdict.rule 'authors' has no unknown class (it calls unparseable critiques wrong), "
                             "so verdict.keep [unknown] would reject every row")
        return self


class VerifySpec(Strict):
    """Rule-based answer check of each response against the reference answer (math-verify)."""

    answer_rule: str = Field(default="auto", description="how to extract the response's final answer")
    workers: int = Field(default=2, gt=0)
    timeout_s: float = Field(default=5.0, gt=0, description="hard per-item limit")
    max_chars: int = Field(default=1000, gt=0, description="longer answers are unverifiable")
    drop: list[Literal["correct", "incorrect", "unverifiable", "timeout", "error"]] = Field(
        default_factory=list, description="reject rows with these statuses"
    )


class AgreementSpec(Strict):
    """Cross the teacher's verdict with the verifier's status (needs verify)."""

    drop_contradictions: bool = Field(
        default=False, description="reject critiques whose verdict contradicts the verifier (the paper kept all)"
    )


class PanelSpec(Strict):
    """Several teachers on the same response (``teacher`` is a list): their agreement, and which critiques to keep."""

    keep: Literal["all", "majority", "verifier"] = Field(
        default="all", description="all: every critique; majority: critiques whose verdict is the teachers' "
                                   "strict majority verdict on that response; verifier: critiques whose verdict "
                                   "matches the verifier (right = correct, wrong = incorrect; needs verify)")


class DedupSpec(Strict):
    """Exact (normalized text) and MinHash-LSH near-duplicate removal on questions; first occurrence kept."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(default=0.8, gt=0, le=1)
    num_perm: int = Field(default=128, gt=0)
    shingle: int = Field(default=5, gt=0, description="word n-gram size of the shingles")


class DecontaminateSpec(Strict):
    """Drop questions sharing a word n-gram with a benchmark test problem (open-r1 style)."""

    benchmarks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DECONTAMINATION),
        description="names of cftdata.benchmarks.BENCHMARKS (e.g. add math, gpqa_diamond, mmlu_pro)",
    )
    ngram: int = Field(default=8, gt=0)
    data_dir: str | None = Field(default=None, description="local <benchmark>/test.jsonl files instead of the Hub")

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, v: list[str]) -> list[str]:
        from cftdata.benchmarks import resolve_benchmarks

        try:
            return resolve_benchmarks(v)
        except CftdataError as e:
            raise ValueError(str(e).rstrip(".")) from None


class SelectSpec(Strict):
    """Choose the final subset from the critiqued pool (see cftdata.quality.selectors)."""

    strategy: str = "longest_critique"
    n: int = Field(default=50_000, gt=0)
    seed: int | None = Field(default=None, description="default: run.seed")
    params: dict[str, Any] = Field(default_factory=dict, description="strategy parameters (trims, pool, ...)")


class HubSpec(Strict):
    """Push the finished build to the Hugging Face Hub."""

    repo: str
    config: str | None = None
    private: bool = False
    revision: str | None = None
    include_rejects: bool = False

    @field_validator("repo")
    @classmethod
    def _repo_id(cls, v: str) -> str:
        from cftdata.publish.push import check_repo_id

        return check_repo_id(v)


class OutputSpec(Strict):
    dir: str | None = Field(default=None, description="default: outputs/<name>")
    format: str = Field(default="alpaca", description="alpaca, alpaca-authors, alpaca-batch, alpaca-mini, messages, "
                        "prompt-completion, sft-paper, sft-alpaca")
    rows_per_file: int = Field(default=100_000, gt=0)
    provenance: bool = Field(default=True, description="keep id, source, models and verdict columns")
    system_prompt: str | None = Field(default=None, description="system turn for the messages formats")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        from cftdata.formats import FORMATS

        if v not in FORMATS:
            raise ValueError(f"unknown output format {v!r}; use one of {', '.join(FORMATS.names())}")
        return v


class CacheSpec(Strict):
    enabled: bool = True
    dir: str | None = Field(default=None, description="default: $CFTDATA_CACHE_DIR or ~/.cache/cftdata")


class RunSpec(Strict):
    shard_size: int = Field(default=1000, gt=0, description="rows per shard; memory is bounded by it")
    seed: int = 0
    executor: Literal["local", "ray"] = Field(
        default="local", description="ray: run verify and in-process engines that scale out (vllm) as Ray Data jobs "
                                      "(the ray extra)")
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join (default: $RAY_ADDRESS, else a local one on 127.0.0.1)")
    ray_concurrency: int = Field(default=1, gt=0, description="Ray Data actors per job (vLLM engines, verifiers)")
    ray_num_gpus_per_worker: float = Field(default=1, ge=0, description="GPUs per vLLM actor")
    ray_batch_size: int = Field(default=256, gt=0, description="rows per Ray Data batch")


class Recipe(Strict):
    """A whole recipe. Key paths (``teacher.model``...) are what ``--set`` addresses."""

    version: Literal[1] = 1
    name: str
    description: str | None = None
    source: SourceSpec
    respond: one_or_many(RespondSpec) = Field(  # type: ignore[valid-type]
        default_factory=RespondSpec, description="one generator, or a list of them (fan-out in one build)")
    teacher: one_or_many(TeacherSpec) = Field(  # type: ignore[valid-type]
        default_factory=TeacherSpec, description="one teacher, or a list of them (each critiques every response)")
    verdict: VerdictSpec = Field(default_factory=VerdictSpec)
    verify: VerifySpec | None = None
    agreement: AgreementSpec | None = None
    panel: PanelSpec | None = None
    refine: RefineSpec | None = None
    dedup: DedupSpec | None = None
    decontaminate: DecontaminateSpec | None = None
    select: SelectSpec | None = None
    hub: HubSpec | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    run: RunSpec = Field(default_factory=RunSpec)

    # Where the recipe was read from (not a YAML key): relative paths resolve against it.
    _origin: Path | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("name must be a plain folder name (no '/', not starting with '.')")
        return v

    @field_validator("respond", "teacher")
    @classmethod
    def _distinct_labels(cls, v: Any, info: Any) -> Any:
        if not isinstance(v, list):
            return v
        if not v:
            raise ValueError("an empty list: give one model mapping or a list of at least one")
        seen: dict[str, int] = {}
        for i, spec in enumerate(v):
            if info.field_name == "teacher" and spec.backend == "none":
                raise ValueError(f"{info.field_name}[{i}]: backend 'none' cannot be one of several teachers "
                                 "(leave critiques out with a single 'teacher: {backend: none}')")
            name = model_label(spec)
            if name in seen:
                raise ValueError(f"{info.field_name}[{seen[name]}] and {info.field_name}[{i}] are both {name!r}; "
                                 "give each a distinct 'label'")
            seen[name] = i
        return v

    @model_validator(mode="after")
    def _refine_needs(self) -> Recipe:
        if self.refine is not None and not self.critiques:
            raise ValueError("refine needs critiques: a teacher other than 'none'")
        return self

    @model_validator(mode="after")
    def _panel_needs(self) -> Recipe:
        if self.panel is not None and self.panel.keep == "verifier" and self.verify is None:
            raise ValueError("panel.keep 'verifier' needs a verify section (the verifier's status of each response)")
        return self

    @property
    def generators(self) -> list[RespondSpec]:
        """The generators: ``respond`` as a list (one mapping = a list of one)."""
        return list(self.respond) if isinstance(self.respond, list) else [self.respond]

    @property
    def teachers(self) -> list[TeacherSpec]:
        """The teachers: ``teacher`` as a list (one mapping = a list of one)."""
        return list(self.teacher) if isinstance(self.teacher, list) else [self.teacher]

    @property
    def fan_out(self) -> bool:
        """Whether ``respond`` or ``teacher`` is a list (rows then carry ids per generator and teacher)."""
        return isinstance(self.respond, list) or isinstance(self.teacher, list)

    @property
    def critiques(self) -> bool:
        """Whether the build has critiques (some teacher other than ``none``)."""
        return any(t.backend != "none" for t in self.teachers)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir) if self.output.dir else Path("outputs") / self.name

    def check_output_dir(self) -> None:
        """Raise a :class:`RecipeError` naming ``output.dir`` unless the build folder is a folder or can be
        created (nothing is created here)."""
        out = self.output_dir
        key = "output.dir" if self.output.dir else "output.dir (default outputs/<name>)"
        if out.exists():
            if not out.is_dir():
                raise RecipeError(f"{key} {out} is an existing file, not a folder: point output.dir at a folder "
                                  "(or remove the file).")
            return
        parent = out.absolute().parent
        while not parent.exists():
            parent = parent.parent
        import os

        if not parent.is_dir():
            raise RecipeError(f"{key} {out} cannot be created: {parent} is a file, not a folder.")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RecipeError(f"{key} {out} cannot be created: no permission to write in {parent}.")

    def resolve_path(self, p: str) -> Path:
        """A relative path resolves against the current folder, else against the recipe's folder."""
        path = Path(p).expanduser()
        if path.is_absolute() or path.exists() or self._origin is None:
            return path
        beside = self._origin.parent / path
        return beside if beside.exists() else path

    def resolved_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# loading


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"Recipe file {path} does not exist (or is not a file).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError(f"Recipe file {path} is not valid YAML{where}: {problem}.") from None
    except UnicodeDecodeError:
        raise RecipeError(f"Recipe file {path} is not UTF-8 text.") from None
    if not isinstance(data, dict):
        raise RecipeError(f"Recipe file {path} must hold a mapping of keys (name, source, teacher, ...).")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base``: mappings merge key by key, other values replace, and ``null``
    removes the key (so its default applies: ``params: null`` drops a base recipe's params)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_recipe_dict(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it ``extends``, merged; not yet validated."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise RecipeError(f"Recipe {path} extends itself in a loop: {chain}.")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise RecipeError(f"Recipe {path}: key 'extends' must be a path to a base recipe (a string).")
    base_path = (path.parent / parent) if not Path(parent).is_absolute() else Path(parent)
    if not base_path.is_file():
        raise RecipeError(f"Recipe {path}: 'extends: {parent}' names a file that does not exist ({base_path}).")
    return deep_merge(read_recipe_dict(base_path, (*_seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``teacher.params.max_tokens=512`` -> (['teacher', 'params', 'max_tokens'], 512)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set teacher.model=gpt-4o-mini.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``value`` at ``keys`` (a number addresses an item of a list: ``teacher.1.model``)."""
    node: Any = data
    for i, k in enumerate(keys):
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not (k.isdigit() and int(k) < len(node)):
                raise RecipeError(f"--set {'.'.join(keys)}: {'.'.join(keys[:i]) or 'the recipe'} is a list of "
                                  f"{len(node)}; address an item by its number (0 to {len(node) - 1}).")
            k = int(k)  # type: ignore[assignment]
        if i == len(keys) - 1:
            node[k] = value
            return
        nxt = node[k] if isinstance(node, list) else node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, (dict, list)):
            raise RecipeError(f"--set {'.'.join(keys)}: {where} is a {type(nxt).__name__}, not a mapping.")
        node = nxt


def _model_in(ann: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (itself, or inside a union / list / Annotated)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _key_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error location without the union tags of one-or-many keys."""
    return tuple(p for p in loc if p not in (_ONE, _MANY))


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts at ``loc`` (used to say what was expected for a typo)."""
    current: Any = model
    for part in _key_path(loc)[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in _key_path(loc)).lstrip(".") \
            or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(Recipe, loc)
            hint = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
            lines.append(f"unknown key '{key}'.{hint}")
        elif e["type"] == "missing":
            lines.append(f"key '{key}' is required but missing.")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"key '{key}': {msg}{got_s}." if loc else f"{msg}{got_s}.")
    return f"Recipe {origin} is invalid: " + " ".join(lines)


def validate_recipe(data: dict[str, Any], origin: str = "<recipe>", path: Path | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, origin)) from None
    recipe._origin = path
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, merge (``extends``), override (``--set``) and validate a recipe file."""
    path = Path(path)
    data = read_recipe_dict(path)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    origin = str(path) + (f" (with --set {', '.join(overrides)})" if overrides else "")
    return validate_recipe(data, origin, path.resolve())
