"""``transformers``: a model run in process with transformers' ``generate`` (any device; the ``train`` extra).

``model`` is a Hub id, a model folder (a training checkpoint), a ``.gguf`` file (dequantised) or a bundled
alias (:func:`cftdata.backends.models.resolve_model`). Chat requests are rendered with the tokenizer's chat
template; raw-prompt requests are tokenized as they are (no special tokens added).

Greedy requests (``temperature`` 0 or unset) are generated in batches of ``options.batch_size`` (default 16)
prompts of similar length, left-padded; each finished batch is reported at once (and so cached).
Sampled requests (``temperature`` > 0) run one at a time, seeded with ``seed`` (or a seed derived from the
request), so a sample does not depend on its batch neighbours. Generation stops at the tokenizer's EOS,
at stop strings (``stop``) and at ``max_tokens`` (default 512); the stop string is cut from the text.

Options: ``batch_size``, ``device`` (default ``cuda`` when available, else ``cpu``), ``dtype`` (a torch
dtype name; default bfloat16 on GPU, float32 on CPU).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from cftdata.backends.base import BACKENDS, Backend, OnResult, Request, Result, cut_at_stop
from cftdata.backends.models import model_fingerprint
from cftdata.errors import BackendConfigError

OPTIONS = ("batch_size", "device", "dtype")
PARAMS = ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed")
DEFAULT_MAX_TOKENS = 512


@BACKENDS.register("transformers")
class TransformersBackend(Backend):
    name = "transformers"
    raw_prompts = True

    @classmethod
    def can_run(cls, model: str) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))

    def __init__(self, spec) -> None:
        super().__init__(spec)
        unknown = set(spec.options) - set(OPTIONS)
        if unknown:
            raise BackendConfigError(f"transformers backend: unknown options {sorted(unknown)}; "
                                     f"options: {', '.join(OPTIONS)}.")
        self.batch_size = int(spec.options.get("batch_size", 16))
        self._model: Any = None
        self._tok: Any = None
        self.device: str | None = None
        self.calls = 0

    @property
    def cache_namespace(self) -> str:
        fp = model_fingerprint(self.spec.model)
        return "transformers" + (f":{fp}" if fp else "")

    def _load(self) -> None:
        if self._model is not None:
            return
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendConfigError(f"The transformers backend needs {', '.join(missing)}: pip install torch "
                                     "&& pip install -e '.[train]'.")
        import torch

        from cftdata.backends.models import load_causal_lm, load_tokenizer, resolve_model

        ref = resolve_model(self.spec.model)
        opts = self.spec.options
        self.device = opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = opts.get("dtype")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device != "cpu" else torch.float32)
        tok = load_tokenizer(ref)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._tok = tok
        self._model = load_causal_lm(ref, dtype=torch_dtype).to(self.device).eval()

    def _prompt(self, request: Request) -> str:
        if request.is_raw:
            return request.prompt or ""
        return self._tok.apply_chat_template(request.message_dicts, tokenize=False, add_generation_prompt=True)

    def check(self, requests: Sequence[Request]) -> None:
        bad = {k for r in requests for k in r.param_dict if k not in PARAMS}
        if bad:
            raise BackendConfigError(f"transformers backend: unsupported sampling parameters {sorted(bad)}; "
                                     f"supported: {', '.join(PARAMS)}.")

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        self.check(requests)
        if not requests:
            return
        self._load()
        prompts = [self._prompt(r) for r in requests]
        greedy = [i for i, r in enumerate(requests) if not r.param_dict.get("temperature")]
        sampled = [i for i, r in enumerate(requests) if r.param_dict.get("temperature")]
        # Greedy: batches of prompts of similar length and the same settings (fewer pad tokens).
        greedy.sort(key=lambda i: (repr(sorted(requests[i].param_dict.items())), len(prompts[i])))
        batch: list[int] = []
        for i in greedy:
            if batch and (len(batch) == self.batch_size or requests[i].params != requests[batch[0]].params):
                self._run(batch, prompts, requests, on_result)
                batch = []
            batch.append(i)
        if batch:
            self._run(batch, prompts, requests, on_result)
        for i in sampled:
            self._run([i], prompts, requests, on_result)

    def _run(self, idx: list[int], prompts: list[str], requests: Sequence[Request], on_result: OnResult) -> None:
        import torch

        tok, model = self._tok, self._model
        p = requests[idx[0]].param_dict
        stop = list(p.get("stop") or [])
        max_new = int(p.get("max_tokens") or DEFAULT_MAX_TOKENS)
        vocab = tok.get_vocab()
        eos = {vocab[s] for s in stop if s in vocab}
        if tok.eos_token_id is not None:
            eos.add(tok.eos_token_id)
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new, eos_token_id=sorted(eos), pad_token_id=tok.pad_token_id)
        if p.get("temperature"):
            seed = p.get("seed")
            if seed is None:
                seed = int(requests[idx[0]].cache_key(self.cache_namespace)[:8], 16)
            torch.manual_seed(int(seed))
            kwargs.update(do_sample=True, temperature=float(p["temperature"]), top_p=p.get("top_p"),
                          top_k=p.get("top_k"))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        multi = [s for s in stop if s not in vocab]
        if multi:
            kwargs.update(stop_strings=multi, tokenizer=tok)
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        try:
            with torch.no_grad():
                out = model.generate(**enc, **kwargs)
        except (RuntimeError, ValueError) as e:  # out of memory, a too long prompt...: these rows fail
            for i in idx:
                self.calls += 1
                on_result(i, Result(error="generation_error", error_detail=f"{type(e).__name__}: {e}"[:500]))
            return
        n_in = int(enc["input_ids"].shape[1])
        pad = tok.pad_token_id
        for j, i in enumerate(idx):
            new = out[j, n_in:].tolist()
            if pad not in eos:  # rows that stopped early are padded up to the longest one
                while new and new[-1] == pad:
                    new.pop()
            end = next((k for k, t in enumerate(new) if t in eos), None)
            if end is not None:
                new = new[:end + 1]
            text = tok.decode(new[:end] if end is not None else new, skip_special_tokens=False)
            full = len(text)
            text = cut_at_stop(text, stop)
            hit = len(text) < full
            finish = "stop" if end is not None or hit or len(new) < max_new else "length"
            self.calls += 1
            on_result(i, Result(text=text, finish_reason=finish, input_tokens=int(enc["attention_mask"][j].sum()),
                                output_tokens=len(new)))

    def stats(self) -> dict:
        return {"requests": self.calls, "device": self.device}

    def close(self) -> None:
        self._model = None
        self._tok = None
