"""The fine-tune itself: TRL's ``SFTTrainer`` on pre-tokenized, pre-masked CFT examples.

:func:`run_training` loads the tokenizer (installing the configured chat template), loads the model,
tokenizes the data with :mod:`cftdata.train.data` (``input_ids`` + ``labels``, so TRL skips its own
tokenization and uses the mask as is), builds an ``SFTConfig`` from the :class:`TrainConfig` and trains.
Checkpoints land in ``OUTPUT_DIR/checkpoint-<step>`` (model + tokenizer with its chat template), the
final model in ``OUTPUT_DIR``, per-step logs in ``OUTPUT_DIR/train_log.jsonl`` and a summary in
``OUTPUT_DIR/cftdata_train.json``.

Under ``accelerate launch`` (several processes) this runs in every process; DeepSpeed comes from the
launcher. Run in-process on a GPU with ``deepspeed`` set, it is passed to the trainer directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cftdata.backends.models import ModelRef, load_causal_lm, load_tokenizer, resolve_model
from cftdata.errors import CftdataError
from cftdata.train.config import TrainConfig, deepspeed_config_path, gradient_accumulation

__all__ = ["TrainResult", "build_sft_config", "prepare_model_and_tokenizer", "run_training"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    checkpoints: list[Path]
    steps: int
    train_loss: float | None
    rows: int
    truncated: int
    grad_accum: int
    world_size: int
    seconds: float


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _launched_with_deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def _check_device(config: TrainConfig) -> bool:
    """Returns use_cpu; raises when the configuration cannot run on this machine."""
    import torch

    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise CftdataError(f"Config {config.name} asks for device=cuda, but no CUDA GPU is visible. On a CPU use "
                           "--config cpu-smoke (or --set device=cpu --set bf16=false --set deepspeed=null).")
    use_cpu = config.device == "cpu" or not cuda
    if use_cpu and config.deepspeed:
        raise CftdataError(f"Config {config.name} uses DeepSpeed ({config.deepspeed}), which needs GPUs, but this "
                           "run is on the CPU. Use --config cpu-smoke, or --set deepspeed=null.")
    if config.deepspeed and not _launched_with_deepspeed():
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise CftdataError(f"Config {config.name} uses DeepSpeed ZeRO-3 but the deepspeed package is not "
                               "installed: pip install deepspeed (on the GPU machines), or --set "
                               "deepspeed=null.") from None
    return use_cpu


def build_sft_config(config: TrainConfig, output_dir: str | Path, world_size: int, use_cpu: bool,
                     **extra: Any) -> Any:
    """The TRL ``SFTConfig`` for a configuration (gradient accumulation derived from ``world_size``)."""
    from trl import SFTConfig

    accum = gradient_accumulation(config, world_size)
    ds = deepspeed_config_path(config)
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps (ceil), as warmup_ratio was
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        optim=config.optim,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16,
        fp16=False,
        packing=config.packing,
        padding_free=False,
        max_length=config.max_length,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_only_model=config.save_only_model,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to=config.report_to,
        use_cpu=use_cpu,
        dataset_num_proc=config.dataset_num_proc,
        completion_only_loss=None,
        assistant_only_loss=False,
        disable_tqdm=True,
    )
    ckpt_kwargs = {"use_reentrant": False} if config.gradient_checkpointing else None
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"  # renamed in transformers 5.x
    kwargs[f"{prefix}_checkpointing"] = config.gradient_checkpointing
    kwargs[f"{prefix}_checkpointing_kwargs"] = ckpt_kwargs
    if ds is not None and not _launched_with_deepspeed() and not use_cpu:
        kwargs["deepspeed"] = str(ds)
    kwargs.update(extra)
    return SFTConfig(**kwargs)


def prepare_model_and_tokenizer(ref: ModelRef, config: TrainConfig) -> tuple[Any, Any]:
    """Load the tokenizer (chat template installed, pad token set) and the model (embeddings resized if needed)."""
    import torch

    from cftdata.train.data import apply_chat_template_setting

    tokenizer = load_tokenizer(ref)
    added = apply_chat_template_setting(tokenizer, config.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = load_causal_lm(ref, dtype=dtype, attn_implementation=config.attn_implementation)
    if added:
        log.warning("added special tokens %s to the tokenizer; resizing the model's embeddings", added)
        model.resize_token_embeddings(len(tokenizer))
    if config.chat_template == "chatml":
        # After CFT the model ends its turns with <|im_end|>: make generate() stop there too.
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        eos = model.generation_config.eos_token_id
        eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        if im_end not in eos_ids:
            model.generation_config.eos_token_id = [*eos_ids, im_end]
    if config.gradient_checkpointing:
        model.config.use_cache = False
    return model, tokenizer


def _jsonl_logger(path: Path) -> Any:
    """A ``TrainerCallback`` that appends every log record (loss, lr, grad norm, tokens) to a JSONL file."""
    from transformers import TrainerCallback

    class JsonlLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return JsonlLogger()


def _check_mask_survives(trainer: Any, ds: Any) -> None:
    """Fail fast if the installed TRL re-tokenizes or re-masks our examples (its label handling has changed
    across versions): the first prepared example and its collated batch must carry our labels unchanged."""
    prepared = trainer.train_dataset[0]
    ours = next((r for r in ds.select(range(min(len(ds), 64))) if r["input_ids"] == prepared["input_ids"]), None)
    collated = trainer.data_collator([prepared])["labels"][0].tolist()
    if ours is None or prepared.get("labels") != ours["labels"] or collated != ours["labels"]:
        import trl

        raise CftdataError(
            f"The installed TRL ({trl.__version__}) does not keep the label mask cftdata builds (prompt tokens "
            "-100, critique supervised); training would compute the loss on the wrong tokens. Install the "
            "versions the train extra names: pip install -e '.[train]'."
        )


def _existing_checkpoints(output_dir: Path) -> list[Path]:
    cps = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(cps, key=lambda p: int(p.name.split("-")[-1]))


def run_training(
    data: str,
    model: str,
    config: TrainConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Fine-tune MODEL on DATA with a training configuration (in this process).

    Args:
        data: A cftdata output folder, a data file, or a Hub dataset id.
        model: A Hub id, a model folder, a ``.gguf`` file, or ``smollm2-135m``.
        config: The training configuration (see :mod:`cftdata.train.config`).
        output_dir: Where checkpoints, logs and the final model go.
        resume: Continue from the last ``checkpoint-*`` in ``output_dir`` (needs checkpoints saved
            with optimizer state: ``--set save_only_model=false``).
        overwrite: Allow an ``output_dir`` that already holds checkpoints of another run.

    Raises:
        cftdata.errors.CftdataError: bad data, model, device or configuration.
    """
    from cftdata.train.data import load_training_rows, tokenize_dataset

    started = time.monotonic()
    out = Path(output_dir).expanduser()
    existing = _existing_checkpoints(out) if out.is_dir() else []
    if existing and not (resume or overwrite):
        raise CftdataError(f"{out} already holds {len(existing)} checkpoint(s) ({existing[-1].name}...). Use "
                           "--resume to continue that run, --overwrite to train over it, or another --output-dir.")
    if resume and not existing:
        raise CftdataError(f"--resume: no checkpoint-* in {out} to resume from.")
    ref = resolve_model(model)
    use_cpu = _check_device(config)
    world = _world_size()
    sft_config = build_sft_config(config, out, world, use_cpu)  # before the model: sets up ZeRO-3 init
    model_obj, tokenizer = prepare_model_and_tokenizer(ref, config)
    from accelerate import PartialState

    # Under a multi-process launch the node's main process reads and tokenizes first (filling the datasets
    # cache); the others then read the cache instead of racing on it.
    with PartialState().local_main_process_first():
        raw = load_training_rows(data, config.dataset_split, config.dataset_config, config.limit)
        train_ds, counts = tokenize_dataset(raw, tokenizer, config.max_length, config.truncation,
                                            config.system_prompt, config.dataset_num_proc)
    if counts["truncated"] and _is_main_process():
        log.warning("%d of %d examples were longer than %d tokens and were truncated (%s)%s",
                    counts["truncated"], counts["rows"], config.max_length, config.truncation,
                    ", none dropped" if config.truncation == "llamafactory"
                    else "; TRL drops those left with no critique token")

    from trl import SFTTrainer

    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    if not resume and _is_main_process() and log_path.exists():
        log_path.unlink()  # --overwrite: a fresh log, not the previous run's
    trainer = SFTTrainer(model=model_obj, args=sft_config, train_dataset=train_ds, processing_class=tokenizer,
                         callbacks=[_jsonl_logger(log_path)])
    _check_mask_survives(trainer, train_ds)
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out))
    checkpoints = _existing_checkpoints(out)
    summary = TrainResult(
        output_dir=out, checkpoints=checkpoints, steps=int(trainer.state.global_step),
        train_loss=float(result.training_loss) if result.training_loss is not None else None,
        rows=int(counts["rows"]), truncated=int(counts["truncated"]),
        grad_accum=int(sft_config.gradient_accumulation_steps), world_size=world,
        seconds=round(time.monotonic() - started, 1),
    )
    if trainer.is_world_process_zero():
        _write_summary(out, data, ref, config, summary, counts)
    return summary


def _write_summary(out: Path, data: str, ref: ModelRef, config: TrainConfig, s: TrainResult,
                   counts: dict[str, Any]) -> None:
    import importlib.metadata as md

    versions = {}
    for pkg in ("cftdata", "torch", "transformers", "trl", "accelerate", "deepspeed"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    record = {
        "data": data, "model": ref.spec, "config": config.model_dump(), "data_format": counts["format"],
        "rows": s.rows, "truncated": s.truncated, "world_size": s.world_size, "grad_accum": s.grad_accum,
        "global_batch": config.per_device_train_batch_size * s.world_size * s.grad_accum,
        "steps": s.steps, "train_loss": s.train_loss, "seconds": s.seconds,
        "checkpoints": [p.name for p in s.checkpoints], "versions": versions,
    }
    (out / "cftdata_train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
