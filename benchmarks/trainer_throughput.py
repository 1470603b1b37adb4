"""Trainer throughput on a GPU machine: tokens/s/GPU, MFU, and the projected wall time of the paper's run.

Runs a few optimizer steps of the bundled trainer (cftdata.train: TRL SFTTrainer, the
``reference-8xh100`` settings unless told otherwise) and reports, after ``--warmup`` steps:

* tokens/second/GPU (non-padding tokens, from TRL's ``num_tokens`` counter, divided by the world size);
* model FLOPs utilisation: (6 N + 12 L d T) FLOPs per token x tokens/s/GPU / peak (``--peak-tflops``,
  default 989 for an H100 SXM in dense bf16); the hardware FLOPs utilisation with gradient checkpointing
  (one extra forward: 8 N instead of 6 N) is printed beside it;
* the projected wall time of the reference run: 50,000 examples x the average example length /
  (tokens/s/GPU x 8 GPUs), against the paper's "about 1 hour on 8xH100".

Models: ``--preset 1.5b`` / ``--preset 7b`` build a randomly initialised model with the shapes of
Qwen2.5-Math-1.5B / Qwen2.5-Math-7B (no download: throughput does not depend on the weights);
``--model`` loads a real one (Hub id or folder). Data: synthetic sequences of ``--seq-len`` tokens
(half prompt, half supervised), or ``--data`` = a cftdata output folder, tokenized by the trainer's own
pipeline (the projection then uses its real average length).

    # one GPU (1.5B fits; the 7B needs ZeRO-3 over several GPUs)
    python benchmarks/trainer_throughput.py --preset 1.5b --steps 4 --global-batch 64
    # 8 GPUs, the reference configuration (ZeRO-3, global batch 512)
    accelerate launch --config_file cftdata/train/configs/accelerate/deepspeed_zero3.yaml \\
        --deepspeed_config_file cftdata/train/configs/deepspeed/zero3.json --mixed_precision bf16 \\
        --num_processes 8 benchmarks/trainer_throughput.py --preset 7b --steps 3
    # CPU smoke check of the script itself (numbers meaningless): what CI and laptops can run
    python benchmarks/trainer_throughput.py --device cpu --tiny

It has NOT been run on a GPU by its author (no GPU was available); only the CPU smoke mode has run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Qwen2.5-Math shapes (config.json of the Hub models).
PRESETS: dict[str, dict[str, Any]] = {
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
                 max_position_embeddings=4096, rope_theta=10000.0),
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False,
               max_position_embeddings=4096, rope_theta=10000.0),
}
PAPER_EXAMPLES = 50_000
PAPER_GPUS = 8
PAPER_HOURS = 1.0


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), help="random-init model with these shapes")
    src.add_argument("--model", help="Hub id or folder of a real model")
    src.add_argument("--tiny", action="store_true", help="a tiny random model (CPU smoke check)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--config", default="reference-8xh100", help="training config (default: the paper's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=3, help="measured optimizer steps")
    p.add_argument("--warmup", type=int, default=1, help="optimizer steps before measuring")
    p.add_argument("--global-batch", type=int, help="override global_batch_size (default: the config's, 512)")
    p.add_argument("--per-device-batch", type=int, help="override per_device_train_batch_size")
    p.add_argument("--seq-len", type=int, default=1024, help="synthetic example length in tokens")
    p.add_argument("--data", help="a cftdata output folder to take real examples from")
    p.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s per GPU (default: 989, H100 SXM)")
    p.add_argument("--output", help="write the figures as JSON")
    a = p.parse_args(argv)
    if not (a.preset or a.model or a.tiny):
        p.error("choose --preset 1.5b|7b, --model ID, or --tiny")
    return a


def _model_and_tokenizer(a: argparse.Namespace, config: Any, tmp: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from cftdata.backends.models import resolve_model
    from cftdata.train.tiny import build_tiny_model, build_tokenizer
    from cftdata.train.trainer import prepare_model_and_tokenizer

    if a.model:
        return prepare_model_and_tokenizer(resolve_model(a.model), config)
    if a.tiny:
        path = build_tiny_model(tmp / "tiny", hidden_size=128, num_layers=4, intermediate_size=256)
        return prepare_model_and_tokenizer(resolve_model(str(path)), config)
    tokenizer = build_tokenizer()  # only its pad token is used: the data are synthetic token ids
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_config(Qwen2Config(**PRESETS[a.preset]), dtype=dtype)
    if config.gradient_checkpointing:
        model.config.use_cache = False
    return model, tokenizer


def _dataset(a: argparse.Namespace, config: Any, tokenizer: Any, vocab: int, n_rows: int) -> tuple[Any, float]:
    """Training rows (input_ids, labels) and their average length in tokens."""
    import datasets

    if a.data:
        from cftdata.train.data import load_training_rows, tokenize_dataset

        raw = load_training_rows(a.data, limit=n_rows)
        ds, _ = tokenize_dataset(raw, tokenizer, config.max_length, config.truncation, config.system_prompt)
        while len(ds) < n_rows:
            ds = datasets.concatenate_datasets([ds, ds])
        ds = ds.select(range(n_rows))
    else:
        import random

        rng = random.Random(0)
        half = a.seq_len // 2
        rows = []
        for _ in range(n_rows):
            ids = [rng.randrange(10, vocab) for _ in range(a.seq_len)]
            rows.append({"input_ids": ids, "labels": [-100] * half + ids[half:]})
        ds = datasets.Dataset.from_list(rows)
    avg = sum(len(x) for x in ds["input_ids"]) / len(ds)
    return ds, avg


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurement; prints a report and returns the figures."""
    a = _args(argv)
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from cftdata.train.config import load_train_config
    from cftdata.train.trainer import build_sft_config

    overrides = list(a.overrides)
    cpu = a.device == "cpu" or (a.device == "auto" and not torch.cuda.is_available())
    if cpu:
        overrides += ["device=cpu", "bf16=false", "deepspeed=null", "gradient_checkpointing=false"]
    if a.tiny:
        overrides += ["global_batch_size=4", "per_device_train_batch_size=2"]
    if a.global_batch:
        overrides.append(f"global_batch_size={a.global_batch}")
    if a.per_device_batch:
        overrides.append(f"per_device_train_batch_size={a.per_device_batch}")
    config = load_train_config(a.config, overrides)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    total_steps = a.warmup + a.steps

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        sft_config = build_sft_config(config, tmp / "run", world, use_cpu=cpu, max_steps=total_steps,
                                      save_strategy="no", logging_steps=1, logging_first_step=False)
        model, tokenizer = _model_and_tokenizer(a, config, tmp)
        n_params = sum(getattr(p, "ds_numel", 0) or p.numel() for p in model.parameters())  # ZeRO-3 partitions
        cfg = model.config
        rows_needed = config.per_device_train_batch_size * world * sft_config.gradient_accumulation_steps * total_steps
        ds, avg_len = _dataset(a, config, tokenizer, int(cfg.vocab_size), rows_needed)

        marks: list[tuple[int, float, float]] = []  # (step, time, cumulative tokens)

        class Clock(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "num_tokens" in logs:
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    marks.append((state.global_step, time.perf_counter(), float(logs["num_tokens"])))

        trainer = SFTTrainer(model=model, args=sft_config, train_dataset=ds, processing_class=tokenizer,
                             callbacks=[Clock()])
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0

    measured = [m for m in marks if m[0] >= a.warmup]
    if len(measured) >= 2:
        (s0, t_a, n_a), (s1, t_b, n_b) = measured[0], measured[-1]
        tok_s = (n_b - n_a) / (t_b - t_a)
        step_s = (t_b - t_a) / (s1 - s0)
    else:  # too few steps: whole-run average
        tok_s = (marks[-1][2] if marks else 0.0) / wall
        step_s = wall / max(1, total_steps)
    tok_s_gpu = tok_s / world
    layers, hidden = int(cfg.num_hidden_layers), int(cfg.hidden_size)
    flops_tok = 6 * n_params + 12 * layers * hidden * avg_len
    hw_flops_tok = (8 if config.gradient_checkpointing else 6) * n_params + 12 * layers * hidden * avg_len
    peak = (a.peak_tflops or (989.0 if not cpu else 0.0)) * 1e12
    mfu = flops_tok * tok_s_gpu / peak if peak else None
    hfu = hw_flops_tok * tok_s_gpu / peak if peak else None
    ref_tokens = PAPER_EXAMPLES * avg_len
    proj_h = ref_tokens / (tok_s_gpu * PAPER_GPUS) / 3600 if tok_s_gpu else math.inf
    figures = {
        "device": "cpu" if cpu else torch.cuda.get_device_name(0), "world_size": world,
        "model": a.model or (f"random {a.preset} (Qwen2.5-Math shapes)" if a.preset else "tiny random"),
        "parameters": n_params, "config": config.name, "global_batch": config.per_device_train_batch_size * world
        * sft_config.gradient_accumulation_steps, "per_device_batch": config.per_device_train_batch_size,
        "grad_accum": sft_config.gradient_accumulation_steps, "avg_example_tokens": round(avg_len, 1),
        "measured_steps": a.steps, "seconds_per_step": round(step_s, 3), "tokens_per_s_per_gpu": round(tok_s_gpu, 1),
        "mfu": None if mfu is None else round(mfu, 4), "hfu": None if hfu is None else round(hfu, 4),
        "projected_reference_hours_8gpu": round(proj_h, 2), "paper_hours": PAPER_HOURS,
    }
    if int(os.environ.get("RANK", "0")) == 0:
        note = " (CPU smoke check: these numbers mean nothing)" if cpu else ""
        print(f"trainer throughput{note}")
        for k, v in figures.items():
            print(f"  {k:<32} {v}")
        print(f"  -> the 50K reference run ({PAPER_EXAMPLES:,} x {avg_len:.0f} tokens) would take "
              f"{proj_h:.2f} h on {PAPER_GPUS} such GPUs (paper: ~{PAPER_HOURS:g} h on 8xH100)")
        if a.output:
            Path(a.output).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
