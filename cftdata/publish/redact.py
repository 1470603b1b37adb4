"""Keep secrets out of everything that is published: the dataset card and the uploaded manifest.

A recipe only names the environment variable that holds an API key (``api_key_env``), but secrets can
still slip in: ``--set teacher.options.api_key=...`` overrides, backend ``options`` or ``headers``, a
``base_url`` with ``user:password@`` or ``?key=``. Three layers catch them:

* keys that name a secret (``api_key``, ``token``, ``authorization``, ``password``...) get their value
  replaced by ``***`` wherever they sit in the manifest (``max_tokens``, ``input_tokens`` or
  ``api_key_env`` are not secret names);
* text patterns of well-known credentials (``sk-...``, ``hf_...``, ``Bearer ...``, URL user info and
  ``key=``/``token=`` query parameters, ``KEY=VALUE`` overrides);
* the exact values of the secrets this process knows (the Hub token, the variables the recipe's
  ``api_key_env`` name, the usual provider variables) wherever they appear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

#: Well-known environment variables holding credentials (their values are masked wherever they appear).
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                   "AZURE_OPENAI_API_KEY", "TOGETHER_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY",
                   "DEEPSEEK_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "VLLM_API_KEY")

_SECRET_NAME = re.compile(
    r"(?:^|[_.\-])(?:api[_\-]?key|apikey|secret|secret[_\-]?key|client[_\-]?secret|password|passwd|token|"
    r"access[_\-]?token|refresh[_\-]?token|auth|authorization|bearer|credentials?|cookie|private[_\-]?key)$",
    re.IGNORECASE,
)

_TEXT_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # provider keys and tokens
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{12,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), MASK),
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + MASK),
    # https://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
    # ?key=... &token=... &sig=...
    (re.compile(r"(?i)([?&](?:api[_\-]?key|key|token|access[_\-]?token|sig|signature|password|secret)=)[^&\s#\"']+"),
     r"\1" + MASK),
    # teacher.options.api_key=..., "token": "...", password: ...
    (re.compile(r"(?i)((?:^|(?<=[\s\"'{,(\[]))[\w.\-]*?(?:api[_\-]?key|apikey|secret|password|passwd|(?<![a-z])token|"
                r"authorization)[\"']?\s*[=:]\s*[\"']?)(?!\*\*\*|(?:null|None|~)\b)[^\s\"',}\]]+"), r"\1" + MASK),
]


def is_secret_name(key: str) -> bool:
    """True for a mapping key that names a credential (``api_key``, ``hf_token``, ``Authorization``...)."""
    k = key.strip()
    if k.lower().endswith(("_env", "-env")):  # api_key_env names a variable, it does not hold the key
        return False
    return bool(_SECRET_NAME.search(k))


def known_secrets(manifest: dict[str, Any] | None = None, extra: Iterable[str | None] = ()) -> list[str]:
    """Secret values this process can see: ``extra`` (e.g. the Hub token), the variables named by the recipe's
    ``api_key_env`` fields, and the usual provider variables. Short values (< 8 chars) are ignored."""
    names = set(SECRET_ENV_VARS)
    recipe = (manifest or {}).get("recipe") or {}
    for role in ("respond", "teacher"):
        specs = recipe.get(role) or {}
        for spec in specs if isinstance(specs, list) else [specs]:
            if isinstance(spec, dict) and isinstance(spec.get("api_key_env"), str):
                names.add(spec["api_key_env"])
    values = [os.environ.get(n) for n in sorted(names)] + list(extra)
    out = {v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= 8}
    return sorted(out, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask known secret values and credential-looking patterns in free text."""
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of ``obj`` (JSON-like) with secret-named values and secret-looking strings masked."""
    secrets = list(secrets)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if isinstance(k, str) and is_secret_name(k) and v not in (None, "", {}, []) and not isinstance(v, bool):
                    out[k] = MASK
                else:
                    out[k] = walk(v)
            return out
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return redact_text(value, secrets)
        return value

    return walk(obj)
