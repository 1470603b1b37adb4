"""Named prompt templates (critique and solve) and custom template files.

A template is a system message and a Jinja user message. The critique templates receive
``question``, ``response``, ``reference_answer`` and ``reference_solution`` (rows without the ones a template
uses are ``no_reference`` rejects); solve templates receive ``question``. A recipe names a built-in
template (``teacher.prompt: cft-paper``) or points at a YAML file holding ``system`` and ``user``.

The CFT authors used four critique prompts (../shared/reference/cft-paper.md, section 8), each
reproduced byte for byte:

* ``cft-paper`` (default): the paper's appendix A.1: system "...whether his answer is correct...", user
  ``Question: {q}\n\nSolution: {r}``.
* ``cft-script``: the released generation script (TIGER-AI-Lab/CritiqueFineTuning
  ``tools/self_construct_critique_data/generate_critique_by_api.py``): "his solution", and the user
  message starts and ends with a newline: ``\nQuestion: {q}\n\nSolution: {r}\n``.
* ``cft-batch``: the MetaMathQA and NuminaMath Batch-API runs (Wyyyb/CriticCoT
  ``generate_metamath_80k_batch_data.py``, ``generate_numina_80k_batch_data.py``): the system text says
  "solve the a question" (the typo is in the original) and the user message is an indented Python
  triple-quoted f-string: ``\n    Question: {q}\n\n    Answer: {r}\n    ``.
* ``cft-batch-alpaca``: the GPT-4o-mini teacher ablation (``generate_wi_mini_80k_batch_data.py``): the
  batch system text, and the training-format input ``Question:\n{q}\n\nSolution:\n{r}`` as the user
  message.

And one of cftdata's own:

* ``cft-reference``: reference-guided critique. The paper's system text, told to compare the student's final
  answer with the reference answer ("if they differ, the student is wrong"), and a user message
  ``Question: {q}\n\nSolution: {r}\n\nReference answer: {reference_answer}``. A row without a reference answer
  is rejected (``no_reference``), and a recipe that maps no answer field is an error before any call. The verdict
  is still the teacher's: it is told the reference, not the verifier's status.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta
import yaml

from cftdata.errors import RecipeError
from cftdata.registry import Registry

_SYSTEM_TAIL = (
    " is correct or not. Finally, conclude your judgement with 'Conclusion: right/wrong [END]'."
)
_SYSTEM_HEAD = (
    "You are a science expert. A student is trying to solve a question, please explain briefly whether "
)

CFT_SYSTEM_PAPER = _SYSTEM_HEAD + "his answer" + _SYSTEM_TAIL
CFT_SYSTEM_SCRIPT = _SYSTEM_HEAD + "his solution" + _SYSTEM_TAIL
#: The system text of the authors' Batch-API runs, typo ("solve the a question") included.
CFT_SYSTEM_BATCH = CFT_SYSTEM_PAPER.replace("solve a question", "solve the a question")

#: ``cft-reference``: the paper's system text, told that a reference answer comes with the question.
CFT_SYSTEM_REFERENCE = (
    _SYSTEM_HEAD + "his answer is correct or not. Compare the student's final answer with the reference answer: "
    "if they differ, the student is wrong. Finally, conclude your judgement with 'Conclusion: right/wrong [END]'."
)
#: The reference comes last, next to where the critique starts (measured on the quickstart with SmolLM2-135M:
#: 16 of 20 verdicts right about a response whose correctness is known, against 12 with the reference first).
CFT_USER_REFERENCE = ("Question: {{ question }}\n\nSolution: {{ response }}\n\n"
                      "Reference answer: {{ reference_answer }}")

#: The instruction of the paper's Alpaca triple (TIGER-Lab/WebInstruct-CFT).
CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."
#: The instruction of the authors' SFT baseline (Wyyyb/CriticCoT ``fetch_webinstruct_ori_sft_80k_0123.py``).
SFT_INSTRUCTION = "Please reason step by step to solve the following question."

_env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=64)
def _compiled(source: str) -> jinja2.Template:
    """A template compiled once (compiling costs ~0.7 ms, rendering a few microseconds)."""
    return _env.from_string(source)


@dataclass(frozen=True)
class PromptTemplate:
    """A system message (may be empty) and a Jinja user template."""

    name: str
    system: str
    user: str

    @property
    def variables(self) -> frozenset[str]:
        """The names the template reads (``question``, ``response``, ``reference_answer``...)."""
        return frozenset(jinja2.meta.find_undeclared_variables(_env.parse(self.system))
                         | jinja2.meta.find_undeclared_variables(_env.parse(self.user)))

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages for one request."""
        try:
            user = _compiled(self.user).render(**values)
            system = _compiled(self.system).render(**values) if self.system else ""
        except jinja2.UndefinedError as e:
            raise RecipeError(f"Prompt template {self.name!r}: {e.message}.") from None
        msgs = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": user})
        return msgs


CRITIQUE_PROMPTS: Registry[PromptTemplate] = Registry("critique prompt")
SOLVE_PROMPTS: Registry[PromptTemplate] = Registry("solve prompt")

# -- the CFT authors' critique prompts (see the module docstring for the source of each) ----------------
for _t in (
    PromptTemplate("cft-paper", CFT_SYSTEM_PAPER, "Question: {{ question }}\n\nSolution: {{ response }}"),
    PromptTemplate("cft-script", CFT_SYSTEM_SCRIPT, "\nQuestion: {{ question }}\n\nSolution: {{ response }}\n"),
    PromptTemplate("cft-batch", CFT_SYSTEM_BATCH,
                   "\n    Question: {{ question }}\n\n    Answer: {{ response }}\n    "),
    PromptTemplate("cft-batch-alpaca", CFT_SYSTEM_BATCH, "Question:\n{{ question }}\n\nSolution:\n{{ response }}"),
):
    CRITIQUE_PROMPTS.add(_t.name, _t)

# -- cftdata's own: the teacher also sees the reference answer (``reference_answer``) -----------------------
CRITIQUE_PROMPTS.add("cft-reference", PromptTemplate("cft-reference", CFT_SYSTEM_REFERENCE, CFT_USER_REFERENCE))

for _t in (
    # The evaluation prompt of the paper ("qwen25-math-cot"): also a good solve prompt.
    PromptTemplate(
        "qwen25-math-cot",
        "Please reason step by step, and put your final answer within \\boxed{}.",
        "{{ question }}",
    ),
    # A plain prompt for small instruct models.
    PromptTemplate(
        "plain",
        "",
        "Solve the following math problem. Show your reasoning, then give the final answer "
        "within \\boxed{}.\n\n{{ question }}",
    ),
    # A short-answer prompt for small models (the quickstart): fewer steps, so fewer responses hit max_tokens.
    PromptTemplate(
        "short",
        "",
        "Solve the following math problem in a few short steps, then give the final answer within \\boxed{}."
        "\n\n{{ question }}",
    ),
    # No template at all: the question is the whole user turn (what a base model is fed).
    PromptTemplate("raw", "", "{{ question }}"),
):
    SOLVE_PROMPTS.add(_t.name, _t)


def load_template_file(path: Path) -> PromptTemplate:
    """A YAML file with ``user`` (required, Jinja) and ``system`` (optional) keys."""
    if not path.is_file():
        raise RecipeError(f"Prompt template file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError(f"Prompt template file {path} is not valid YAML: {e}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise RecipeError(f"Prompt template file {path} must hold a mapping with a 'user' string (and 'system').")
    extra = set(data) - {"system", "user"}
    if extra:
        raise RecipeError(f"Prompt template file {path}: unknown keys {sorted(extra)}; allowed: system, user.")
    system = data.get("system") or ""
    if not isinstance(system, str):
        raise RecipeError(f"Prompt template file {path}: 'system' must be a string.")
    for text in (system, data["user"]):
        try:
            _env.parse(text)
        except jinja2.TemplateSyntaxError as e:
            raise RecipeError(f"Prompt template file {path}: Jinja syntax error on line {e.lineno}: {e.message}.") from None
    return PromptTemplate(str(path), system, data["user"])


def resolve_prompt(spec: str, registry: Registry[PromptTemplate], resolve_path=Path) -> PromptTemplate:
    """A registered name, or a path to a template file."""
    if spec in registry:
        return registry.get(spec)
    if spec.endswith((".yaml", ".yml")):
        return load_template_file(resolve_path(spec))
    known = ", ".join(registry.names())
    raise RecipeError(f"Unknown {registry.kind} {spec!r}: use one of {known}, or a path to a .yaml template file.")
