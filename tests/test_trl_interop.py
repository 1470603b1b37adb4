"""The prompt-completion output is accepted as is by TRL's SFTTrainer, with completion-only loss:
a build's parquet goes straight into `SFTTrainer` (TRL applies the chat template itself) and trains a step."""

from __future__ import annotations

import json

import pytest

from cftdata.pipeline import build
from cftdata.recipe import validate_recipe

pytest.importorskip("trl", reason="the train extra is not installed")


def test_prompt_completion_build_trains_with_trl(tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from cftdata.train.tiny import build_tiny_model

    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"question": f"What is {i} plus {i}?", "response": f"It is {2 * i + 1}.",
                                       "critique": f"The sum is {2 * i}, not {2 * i + 1}.\nConclusion: wrong [END]"})
                           + "\n" for i in range(8)))
    res = build(validate_recipe({"name": "pc", "source": {"path": str(src), "response": "response"},
                                 "teacher": {"backend": "existing"},
                                 "output": {"dir": str(tmp_path / "out"), "format": "prompt-completion",
                                            "provenance": False, "system_prompt": "You are a helpful assistant."}}))
    ds = datasets.load_dataset("parquet", data_dir=str(res.output_dir / "data"), split="train")
    assert ds.column_names == ["prompt", "completion"]

    model_dir = build_tiny_model(tmp_path / "tiny")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2,
                     learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1,
                     completion_only_loss=True, use_cpu=True, dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    # TRL applied the chat template and built labels itself: only the critique (completion) is supervised.
    row = trainer.train_dataset[0]
    supervised = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100]
    assert 0 < len(supervised) < len(row["input_ids"])
    completion = tok.decode(supervised)
    assert "Conclusion: wrong [END]" in completion and "What is 0 plus 0" not in completion
    assert "What is 0 plus 0" in tok.decode(row["input_ids"])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert (batch["labels"][0, : len(row["input_ids"]) - len(supervised)] == -100).all()
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss > 0
