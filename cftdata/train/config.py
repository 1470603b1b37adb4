"""Training configurations: named YAML files shipped in ``cftdata/train/configs/`` (or any YAML path).

A configuration holds every setting of a fine-tune except the data, the model and the output folder.
Two ship with the package:

``reference-8xh100``
    The CFT paper's validation fine-tune, exactly (see ``docs/training.md``).
``cpu-smoke``
    ``extends: reference-8xh100``: the same code path on a CPU with a tiny model (fp32, no DeepSpeed,
    a few steps).

``extends: NAME_OR_PATH`` reuses a configuration and changes only what differs. ``--set key=value``
overrides any key (values parsed as YAML). Unknown keys and wrong types are a one-paragraph
:class:`~cftdata.errors.CftdataError`.

The global batch size is kept whatever the number of GPUs: gradient accumulation is derived as
``global_batch_size / (per_device_train_batch_size * world_size)`` by :func:`gradient_accumulation`.

Importing this module is cheap (pydantic and yaml only).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cftdata.errors import CftdataError

__all__ = [
    "CONFIG_DIR",
    "PINNED_SYSTEM_PROMPT",
    "TrainConfig",
    "config_names",
    "deepspeed_config_path",
    "gradient_accumulation",
    "load_train_config",
    "parse_set",
]

#: Folder of the packaged configurations (YAML), accelerate configs and DeepSpeed JSON files.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: The system prompt of the paper's fine-tune (LLaMA-Factory's Qwen template before April 2025).
PINNED_SYSTEM_PROMPT = "You are a helpful assistant."


class TrainConfig(BaseModel):
    """Every setting of a fine-tune except the data, the model and the output folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(default="custom", description="the configuration's name (set from the file name)")
    description: str = ""

    # data and template
    chat_template: str = Field(
        default="chatml",
        description="chatml (Qwen ChatML, forced), model (the tokenizer's own) or a path to a .jinja file",
    )
    system_prompt: str | None = Field(
        default=PINNED_SYSTEM_PROMPT, description="system turn for rows that carry none; null for none"
    )
    max_length: int = Field(default=2048, gt=8, description="cutoff in tokens: longer examples are truncated")
    truncation: Literal["llamafactory", "keep_start"] = Field(
        default="llamafactory",
        description="llamafactory: split the budget between prompt and critique as LLaMA-Factory does "
        "(no example loses its whole critique); keep_start: keep the first max_length tokens",
    )
    dataset_num_proc: int | None = Field(default=None, gt=0)
    dataset_split: str = "train"
    dataset_config: str | None = None
    limit: int | None = Field(default=None, gt=0, description="train on the first N rows only")

    # optimisation
    learning_rate: float = Field(default=5e-6, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, description="> 0 overrides num_train_epochs")
    global_batch_size: int | None = Field(default=512, gt=0, description="kept whatever the GPU count")
    per_device_train_batch_size: int = Field(default=8, gt=0)
    gradient_accumulation_steps: int | None = Field(
        default=None, gt=0, description="only when global_batch_size is null; otherwise derived"
    )
    optim: str = "adamw_torch"
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    seed: int = 42

    # precision, memory, parallelism
    bf16: bool = True
    gradient_checkpointing: bool = True
    packing: bool = False
    deepspeed: str | None = Field(default="zero3", description="packaged name (zero3) or a JSON path; null")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    attn_implementation: str | None = None

    # checkpoints and logs
    save_steps: int = Field(default=2, gt=0)
    save_only_model: bool = True
    save_total_limit: int | None = Field(default=None, gt=0)
    logging_steps: int = Field(default=1, gt=0)
    report_to: str = "none"


def config_names() -> list[str]:
    """Names of the packaged configurations."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _config_file(name_or_path: str, relative_to: Path | None = None) -> Path:
    packaged = CONFIG_DIR / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    for base in ([relative_to] if relative_to else []) + [Path.cwd()]:
        p = (base / name_or_path).expanduser()
        if p.is_file():
            return p
    raise CftdataError(
        f"Training config {name_or_path!r}: not a packaged config and no such file. "
        f"Packaged configs: {', '.join(config_names())}."
    )


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise CftdataError(f"Training config {path}: 'extends' loops back to itself.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CftdataError(f"Training config {path}: not valid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise CftdataError(f"Training config {path}: expected a mapping of settings, got {type(data).__name__}.")
    parent = data.pop("extends", None)
    if parent:
        base = _read(_config_file(str(parent), path.parent), (*seen, path))
        base.pop("description", None)
        base.update(data)
        data = base
    return data


def parse_set(text: str) -> tuple[str, Any]:
    """``learning_rate=1e-5`` -> ``("learning_rate", 1e-5)`` (the value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CftdataError(f"--set {text!r}: expected KEY=VALUE, e.g. --set learning_rate=1e-5.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads "5e-6" as a string; accept the usual float spelling for numbers.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value.lower() for c in ".e") else value
    return key, value


def load_train_config(name_or_path: str, overrides: tuple[str, ...] | list[str] = ()) -> TrainConfig:
    """Load a packaged configuration by name (or a YAML file), apply ``--set`` overrides, validate.

    Raises:
        cftdata.errors.CftdataError: unknown name or file, bad YAML, unknown key or bad value.
    """
    path = _config_file(name_or_path)
    data = _read(path)
    data["name"] = path.stem if path.parent == CONFIG_DIR else str(path)
    for item in overrides:
        key, value = parse_set(item)
        if key not in TrainConfig.model_fields:
            raise CftdataError(
                f"--set {item!r}: unknown training setting {key!r}. Settings: "
                f"{', '.join(sorted(TrainConfig.model_fields))}."
            )
        data[key] = value
    try:
        return TrainConfig(**data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        raise CftdataError(f"Training config {data['name']}: {problems}.") from None


def gradient_accumulation(config: TrainConfig, world_size: int) -> int:
    """Gradient accumulation steps that keep ``global_batch_size`` for ``world_size`` processes.

    Example: 512 / (8 per device x 8 GPUs) = 8; 512 / (8 x 16 GPUs) = 4.

    Raises:
        cftdata.errors.CftdataError: the global batch is not a multiple of per-device batch x world size.
    """
    if world_size < 1:
        raise CftdataError(f"world size must be at least 1, got {world_size}.")
    if config.global_batch_size is None:
        return config.gradient_accumulation_steps or 1
    per_step = config.per_device_train_batch_size * world_size
    if config.global_batch_size % per_step:
        raise CftdataError(
            f"Global batch {config.global_batch_size} is not a multiple of per-device batch "
            f"{config.per_device_train_batch_size} x {world_size} processes = {per_step}, so it cannot be kept "
            f"exactly. Change the GPU count or --set per_device_train_batch_size=N so that "
            f"{config.global_batch_size} / (N x {world_size}) is a whole number."
        )
    accum = config.global_batch_size // per_step
    if config.gradient_accumulation_steps is not None and config.gradient_accumulation_steps != accum:
        raise CftdataError(
            f"gradient_accumulation_steps={config.gradient_accumulation_steps} contradicts global_batch_size="
            f"{config.global_batch_size} with {config.per_device_train_batch_size} per device on {world_size} "
            f"processes (which needs {accum}); set one of them, or --set global_batch_size=null."
        )
    return accum


def deepspeed_config_path(config: TrainConfig) -> Path | None:
    """The DeepSpeed JSON a configuration names (a packaged name such as ``zero3``, or a path)."""
    if not config.deepspeed:
        return None
    packaged = CONFIG_DIR / "deepspeed" / f"{config.deepspeed}.json"
    if packaged.is_file():
        return packaged
    p = Path(config.deepspeed).expanduser()
    if p.is_file():
        return p.resolve()
    known = ", ".join(sorted(q.stem for q in (CONFIG_DIR / "deepspeed").glob("*.json")))
    raise CftdataError(f"deepspeed={config.deepspeed!r}: no such file and not a packaged config ({known}).")
