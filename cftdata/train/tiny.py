"""Tiny, randomly initialised models built locally (no downloads): for CPU smoke runs, tests and benchmarks.

:func:`build_tiny_model` trains a byte-level BPE tokenizer with the ``tokenizers`` library on a few KB
of text, installs a chat template (Qwen ChatML by default, or the Llama-3-style one), and saves a
randomly initialised Qwen2 causal LM of the given size next to it. The folder loads with
``AutoTokenizer``/``AutoModelForCausalLM`` like any Hub model::

    python -c "from cftdata.train.tiny import build_tiny_model; build_tiny_model('tiny-qwen2')"
    cftdata train outputs/quickstart --model tiny-qwen2 --config cpu-smoke

A random model writes noise: it exercises the machinery (templates, label masks, the trainer, saving,
evaluation), not the quality.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["CHATML_SPECIALS", "LLAMA3_SPECIALS", "build_tiny_model", "build_tokenizer", "tiny_corpus"]

#: Special tokens of a Qwen-style (ChatML) tiny tokenizer: (bos, eos, pad, others).
CHATML_SPECIALS = {"bos": None, "eos": "<|endoftext|>", "pad": "<|endoftext|>",
                   "extra": ["<|im_start|>", "<|im_end|>"]}
#: Special tokens of a Llama-3-style tiny tokenizer.
LLAMA3_SPECIALS = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": "<|end_of_text|>",
                   "extra": ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"]}

_TEXT = """\
Please critique whether the following solution to the question is correct.
Question: A baker makes 12 muffins per tray and bakes 7 trays. She sells 65 muffins. How many are left?
Solution: 12 x 7 = 84 muffins. 84 - 65 = 19 muffins are left. The answer is 19.
Critique: The student multiplied the muffins per tray by the number of trays, 12 * 7 = 84, which is right.
Then 84 - 65 = 19. The final answer is correct. Conclusion: right [END]
Question: What is the value of $\\frac{3}{4} + \\frac{1}{8}$? Solution: $\\frac{3}{4} = \\frac{6}{8}$, so
the sum is $\\frac{7}{8}$. The final answer is $\\boxed{\\frac{7}{8}}$.
Critique: The common denominator is 8 and 6 + 1 = 7, so the answer 7/8 is correct. Conclusion: right [END]
Question: Solve for $x$: $2x + 3 = 11$. Solution: $2x = 14$, so $x = 7$. Critique: The student added 3
instead of subtracting it: $2x = 8$, so $x = 4$. The solution is wrong. Conclusion: wrong [END]
Please reason step by step, and put your final answer within \\boxed{}.
Convert the point $(0,3)$ in rectangular coordinates to polar coordinates. Enter your answer in the form
$(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$ The answer is $\\left( 3, \\frac{\\pi}{2} \\right)$.
Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. She sells the
remainder at the farmers' market daily for $2 per fresh duck egg. 16 - 3 - 4 = 9 and 9 * 2 = 18. #### 18
You are a helpful assistant. The derivative of $x^2$ is $2x$; the integral of $2x$ is $x^2 + C$.
Let $f(x) = \\sqrt{x}$ and $g(x) = x^2 - 1$; then $f(g(2)) = \\sqrt{3}$. In a right triangle with legs 3
and 4 the hypotenuse is 5, since $3^2 + 4^2 = 25$. The probability of two heads in two tosses is 1/4.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 50 100 1000 + - * / = ( ) [ ] { } < > ^ _ | , . ; :
"""


def tiny_corpus(repeat: int = 4) -> list[str]:
    """A few KB of text (CFT-style critiques, math, numbers) to train a tiny tokenizer on."""
    lines = [line for line in _TEXT.splitlines() if line.strip()]
    return lines * repeat


def build_tokenizer(specials: dict[str, Any] | None = None, vocab_size: int = 512,
                    chat_template: str | None = None, texts: Iterable[str] | None = None) -> Any:
    """Train a byte-level BPE tokenizer locally and wrap it as a transformers fast tokenizer.

    Args:
        specials: :data:`CHATML_SPECIALS` (default) or :data:`LLAMA3_SPECIALS`, or the same shape.
        vocab_size: Target vocabulary size (byte alphabet + merges + special tokens).
        chat_template: Jinja chat template (default: Qwen ChatML for ChatML specials, the
            Llama-3-style template for Llama-3 specials).
        texts: Training text (default :func:`tiny_corpus`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from cftdata.train.data import CHATML_TEMPLATE, LLAMA3_TEMPLATE

    specials = specials or CHATML_SPECIALS
    names = [t for t in (specials.get("bos"), specials.get("eos"), specials.get("pad")) if t]
    names += [t for t in specials.get("extra", []) if t not in names]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=names, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts) if texts is not None else tiny_corpus(), trainer)
    kwargs: dict[str, Any] = {"tokenizer_object": tok, "eos_token": specials["eos"], "pad_token": specials["pad"]}
    if specials.get("bos"):
        kwargs["bos_token"] = specials["bos"]
    hf = PreTrainedTokenizerFast(**kwargs)
    extra = [t for t in specials.get("extra", []) if t not in (specials.get("bos"), specials["eos"])]
    hf.add_special_tokens({"additional_special_tokens": extra})
    if chat_template is None:
        chat_template = LLAMA3_TEMPLATE if specials.get("bos") == "<|begin_of_text|>" else CHATML_TEMPLATE
    hf.chat_template = chat_template
    return hf


def build_tiny_model(out_dir: str | Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     num_kv_heads: int = 2, intermediate_size: int = 128, vocab_size: int = 512,
                     max_position_embeddings: int = 4096, specials: dict[str, Any] | None = None,
                     seed: int = 0) -> Path:
    """Save a tokenizer and a randomly initialised Qwen2 causal LM in ``out_dir``; returns ``out_dir``.

    About 0.1M parameters at the defaults: a training step on a CPU takes milliseconds.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(specials, vocab_size=vocab_size)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", tokenizer.eos_token)
               if t in tokenizer.get_vocab()]
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids[-1], pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
