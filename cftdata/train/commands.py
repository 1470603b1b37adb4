"""Click commands of the trainer extra: ``train``, ``eval``, ``eval-compare`` and ``select-checkpoint``.

Only click and the standard library are imported here: torch, transformers and TRL load inside the
command functions, so ``cftdata --help`` stays instant and the data pipeline never pays for them.
Registered on the main group in ``cftdata/cli.py``::

    from cftdata.train.commands import eval_cmd, eval_compare, select_checkpoint, train
    main.add_command(train)
    main.add_command(eval_cmd)
    main.add_command(eval_compare)
    main.add_command(select_checkpoint)

User errors raise :class:`cftdata.errors.CftdataError` (one paragraph, exit code 2).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import click

__all__ = ["eval_cmd", "eval_compare", "require_extra", "select_checkpoint", "train"]

_BACKEND_HELP = ("A backend of the model layer: vllm (GPU), transformers, local (GGUF via llama.cpp), or any other "
                 "(openai... with --chat-template model); auto picks local for GGUF, vllm on CUDA, else transformers.")


def _backend_options(pairs: tuple[str, ...]) -> dict:
    """``--option KEY=VALUE`` pairs (values parsed as YAML) -> the backend's ``options``."""
    import yaml

    from cftdata.errors import CftdataError

    out = {}
    for text in pairs:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise CftdataError(f"--option {text!r}: expected KEY=VALUE, e.g. --option batch_size=32.")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _eval_options(f):
    """Options shared by ``eval`` and ``select-checkpoint``: backend, its options, the request cache."""
    f = click.option("--no-cache", is_flag=True, help="Do not read or write the request cache.")(f)
    f = click.option("--cache-dir", type=click.Path(file_okay=False),
                     help="Request cache folder [default: $CFTDATA_CACHE_DIR or ~/.cache/cftdata].")(f)
    f = click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                     help="A backend option, e.g. --option batch_size=32 (transformers), --option "
                          "tensor_parallel_size=8 (vllm), --option n_ctx=8192 (local); repeatable.")(f)
    f = click.option("--backend", default="auto", show_default=True, help=_BACKEND_HELP)(f)
    return f


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)


def require_extra(*modules: str) -> None:
    """Raise a one-paragraph CftdataError naming the install line when the train extra is missing."""
    import importlib.util

    from cftdata.errors import CftdataError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise CftdataError(
            f"This command needs the train extra ({', '.join(missing)} not installed). On a CPU machine: "
            "pip install torch==2.13.0 && pip install -e '.[train]'; on GPU machines install the CUDA build of "
            "torch first, then pip install -e '.[train]' deepspeed."
        )


def _default_output_dir(data: str, model: str, config: str) -> str:
    def short(s: str) -> str:
        return Path(s.rstrip("/")).name.removesuffix(".gguf").removesuffix(".yaml") or "x"

    return str(Path("outputs") / "runs" / f"{short(data)}__{short(model)}__{short(config)}")


@click.command("train")
@click.argument("data")
@click.option("--model", required=True, help="Hub id, model folder, .gguf file, or smollm2-135m (bundled GGUF).")
@click.option("--config", "config_name", required=True, metavar="NAME",
              help="Training config: reference-8xh100 (the paper), cpu-smoke, or a YAML file.")
@click.option("--output-dir", help="Checkpoints and the final model [default: outputs/runs/DATA__MODEL__CONFIG].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a training setting, e.g. --set learning_rate=1e-5 (repeatable).")
@click.option("--print-launch", is_flag=True, help="Print the accelerate launch command for --gpus/--nodes and exit.")
@click.option("--gpus", type=click.IntRange(min=1),
              help="Total GPUs over all nodes [default: 8 with --print-launch, else the GPUs visible here].")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True, help="Number of machines.")
@click.option("--main-process-port", type=int, default=29500, show_default=True, help="Rendezvous port (multi-node).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in the output folder.")
@click.option("--overwrite", is_flag=True, help="Train into an output folder that already has checkpoints.")
def train(data: str, model: str, config_name: str, output_dir: str | None, overrides: tuple[str, ...],
          print_launch: bool, gpus: int | None, nodes: int, main_process_port: int, resume: bool,
          overwrite: bool) -> None:
    """Fine-tune MODEL on DATA (a cftdata output folder, a data file or a Hub dataset id).

    One device: trains in this process. Several GPUs on this node: launches itself with
    accelerate (DeepSpeed ZeRO-3 for the reference config). Several nodes: run the command that
    --print-launch --gpus N --nodes M writes on every node.
    """
    from cftdata.errors import CftdataError
    from cftdata.train.config import load_train_config
    from cftdata.train.launch import build_launch, in_launched_process, python_launcher

    _setup_logging()
    config = load_train_config(config_name, overrides)
    out = output_dir or _default_output_dir(data, model, config_name)
    extra = (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])
    common = dict(data=data, model=model, config_name=config_name, config=config, output_dir=out,
                  overrides=overrides, extra_args=extra, main_process_port=main_process_port)
    if print_launch:
        plan = build_launch(gpus=gpus or 8, nodes=nodes, **common)
        click.echo(plan.render())
        return
    require_extra("torch", "transformers", "trl", "accelerate")
    if not in_launched_process():
        count = gpus
        if count is None and config.device != "cpu":
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (count or 0) > 1 or nodes > 1:
            rank, ip = os.environ.get("MACHINE_RANK"), os.environ.get("MAIN_PROCESS_IP")
            if nodes > 1 and (rank is None or ip is None):
                raise CftdataError(f"--nodes {nodes}: set MACHINE_RANK and MAIN_PROCESS_IP on each node (or run the "
                                   "command that --print-launch writes on every node).")
            plan = build_launch(gpus=count or nodes, nodes=nodes, machine_rank=rank, main_process_ip=ip,
                                executable=python_launcher(), **common)
            click.echo(plan.render(), err=True)
            sys.exit(subprocess.run(plan.argv).returncode)
    from cftdata.train.trainer import run_training

    result = run_training(data, model, config, out, resume=resume, overwrite=overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
        click.echo(f"trained {result.output_dir}: {result.steps} steps on {result.rows} rows "
                   f"({result.truncated} truncated), {result.world_size} process(es) x "
                   f"{result.grad_accum} accumulation, train loss {loss}, {len(result.checkpoints)} checkpoint(s), "
                   f"{result.seconds} s")


_HARNESS_HELP = ("Evaluation protocol: cftdata (last \\boxed{}, math-verify), paper (the CFT authors' harness: their "
                 "stop strings, extraction and grader), qwen25-math (the upstream Qwen2.5-Math harness).")
_GRADER_HELP = "Answer comparison: math-verify, paper or qwen25-math [default: the harness's]."


def _markdown_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".json") + ".md")


@click.command("eval")
@click.argument("model")
@click.option("--benchmarks", default="math500", show_default=True,
              help="Comma-separated: math, minerva_math, gsm8k, olympiadbench, aime24, amc23, math500, theoremqa, "
                   "gpqa_diamond, mmlu_pro; or paper (the main table's six) or all.")
@click.option("--harness", default="cftdata", show_default=True, help=_HARNESS_HELP)
@click.option("--grader", help=_GRADER_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N problems of each benchmark.")
@click.option("--sample", type=click.IntRange(min=1), help="A seeded random N problems of each benchmark.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with <benchmark>/test.jsonl (else the Hub).")
@_eval_options
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="Results JSON (FILE.json); the table goes to FILE.md, per-problem outputs to FILE.samples.jsonl.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True)
@click.option("--answer-rule", default="boxed", show_default=True,
              help="cftdata.verify extraction rule (harness cftdata).")
@click.option("--chat-template", type=click.Choice(["chatml", "model"]), default="chatml", show_default=True,
              help="chatml: the paper's literal Qwen prompt; model: the tokenizer's own template.")
def eval_cmd(model: str, benchmarks: str, harness: str, grader: str | None, limit: int | None, sample: int | None,
             seed: int, data_dir: str | None, backend: str, options: tuple[str, ...], cache_dir: str | None,
             no_cache: bool, output: str, max_new_tokens: int, answer_rule: str, chat_template: str) -> None:
    """Evaluate MODEL on math benchmarks with the CFT paper's protocol (greedy, answer extracted, graded).

    Generations are cached like every model call: rerunning an interrupted evaluation only generates what
    had not finished.
    """
    from cftdata.supervise import supervise
    from cftdata.train.evaluate import EvalSettings, evaluate_model, format_table, resolve_benchmarks

    _setup_logging()
    supervise()  # a native crash of the model runtime (llama.cpp) becomes a message, exit 1; generations are cached
    settings = EvalSettings(benchmarks=resolve_benchmarks(benchmarks), limit=limit, data_dir=data_dir,
                            backend=backend, max_new_tokens=max_new_tokens, answer_rule=answer_rule,
                            chat_template=chat_template, harness=harness, grader=grader, sample=sample, seed=seed)
    out = Path(output)
    samples = out.with_name(out.name.removesuffix(".json") + ".samples.jsonl")
    result = evaluate_model(model, settings, samples_path=samples, backend_options=_backend_options(options),
                            cache_dir=cache_dir, use_cache=not no_cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _markdown_path(out).write_text(format_table(result, markdown=True) + "\n", encoding="utf-8")
    click.echo(format_table(result))
    u = result["usage"]
    click.echo(f"wrote {out}, {_markdown_path(out)} (per-problem outputs: {samples}); harness: {result['harness']}, "
               f"grader: {result['grader']} ({result['grader_description']}); generations: {u['calls_made']} made, "
               f"{u['cache_hits']} from the cache")


@click.command("eval-compare")
@click.argument("run_a", type=click.Path(dir_okay=False))
@click.argument("run_b", type=click.Path(dir_okay=False))
@click.option("--labels", help="Row labels A,B, e.g. CFT,SFT [default: the model names].")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the table as Markdown to this file.")
def eval_compare(run_a: str, run_b: str, labels: str | None, output: str | None) -> None:
    """Two `cftdata eval` results side by side (e.g. CFT vs SFT) in the paper's table layout, with A - B."""
    from cftdata.errors import CftdataError
    from cftdata.train.evaluate import compare_results, format_comparison

    names = None
    if labels is not None:
        names = [x.strip() for x in labels.split(",")]
        if len(names) != 2 or not all(names):
            raise CftdataError(f"--labels {labels!r}: give two labels separated by a comma, e.g. --labels CFT,SFT.")
    cmp = compare_results(run_a, run_b, names)
    click.echo(format_comparison(cmp))
    if output:
        Path(output).write_text(format_comparison(cmp, markdown=True) + "\n", encoding="utf-8")
        click.echo(f"wrote {output}")


@click.command("select-checkpoint")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--benchmark", default="math500", show_default=True,
              help="The validation benchmark (math500 is the authors' choice, and also a reported test set).")
@click.option("--heldout", metavar="SOURCE",
              help="Select on a seeded slice of SOURCE instead, a set that is not a reported benchmark (e.g. "
                   "math_train, the MATH train split, as One-Shot CFT chose on 500 held-out problems).")
@click.option("--heldout-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Problems in the --heldout slice.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --heldout slice.")
@click.option("--harness", default="cftdata", show_default=True, help=_HARNESS_HELP)
@click.option("--grader", help=_GRADER_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N problems.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with <benchmark>/test.jsonl (else the Hub).")
@_eval_options
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False),
              help="Selection table JSON [default: RUN_DIR/checkpoint_selection.json].")
@click.option("--reevaluate", is_flag=True, help="Ignore per-checkpoint results cached by an earlier run.")
def select_checkpoint(run_dir: str, benchmark: str, heldout: str | None, heldout_size: int, seed: int, harness: str,
                      grader: str | None, limit: int | None, data_dir: str | None, backend: str,
                      options: tuple[str, ...], cache_dir: str | None, no_cache: bool, max_new_tokens: int,
                      output: str | None, reevaluate: bool) -> None:
    """Evaluate every checkpoint-* in RUN_DIR, link the best as RUN_DIR/best and write best.json."""
    from cftdata.train.checkpoints import format_selection
    from cftdata.train.checkpoints import select_checkpoint as run_selection
    from cftdata.train.evaluate import EvalSettings, resolve_benchmarks

    _setup_logging()
    settings = EvalSettings(benchmarks=resolve_benchmarks(heldout or benchmark), limit=limit, data_dir=data_dir,
                            backend=backend, max_new_tokens=max_new_tokens, harness=harness, grader=grader,
                            sample=heldout_size if heldout else None, seed=seed)
    record = run_selection(run_dir, settings, output=output, reevaluate=reevaluate, echo=click.echo,
                           backend_options=_backend_options(options), cache_dir=cache_dir, use_cache=not no_cache)
    click.echo(format_selection(record))
    best = record["best"]
    click.echo(f"best: {best['checkpoint']} ({best['accuracy']:.1f}% on {record['selection_set']['description']}); "
               f"{record['best_link']} -> {best['checkpoint']}; table in {record['output']}")
