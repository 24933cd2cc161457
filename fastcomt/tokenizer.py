"""Tokenizers trained locally (no downloads), their chat template, and SFT example encoding.

Two kinds, both byte-level (lossless decoding of anything they can encode):

- `number_word`: one token per word and one per number (`Ġ12`, `12`), every integer 0..number_max
  included whether or not the corpus has it. For the synthetic toy setting: a prototype found that a
  tiny model learned arithmetic worse with per-digit or per-character tokens. A word never seen in
  the corpus, or a number above number_max, becomes `<|unk|>` (a word-level model has no byte
  fallback), so train it on the text it will see and size number_max to the task's values.
- `bpe`: byte-level BPE (GPT-2 pre-tokenisation) for GSM8K-style text.

A real checkpoint brings its own tokenizer and chat template (`kind: pretrained`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "END_OF_TURN",
    "train_tokenizer",
    "load_tokenizer",
    "encode_chat_examples",
]

PAD, UNK, END_OF_TURN = "<|pad|>", "<|unk|>", "<|end|>"
SPECIAL_TOKENS = (PAD, UNK, END_OF_TURN, "<|system|>", "<|user|>", "<|assistant|>")

# Each turn: a role marker, the content, the end-of-turn token (also the EOS that stops generation).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _byte_level_tokenizer(model: Any) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _number_word_model(texts: Iterable[str], number_max: int, min_frequency: int, vocab_size: int | None) -> Any:
    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(piece for piece, _ in splitter.pre_tokenize_str(text))
    vocab: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    # Every integer up to number_max, bare and after a space: results the model computes must be
    # expressible even when the corpus never shows them.
    space = splitter.pre_tokenize_str(" 1")[0][0][:-1]  # the byte-level form of a space ("Ġ")
    for n in range(number_max + 1):
        for token in (str(n), f"{space}{n}"):
            vocab.setdefault(token, len(vocab))
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):  # alphabet() order varies between calls
        vocab.setdefault(char, len(vocab))
    frequent = sorted(
        (t for t, c in counts.items() if c >= min_frequency and t not in vocab), key=lambda t: (-counts[t], t)
    )
    if vocab_size is not None:
        if vocab_size <= len(vocab):
            # Otherwise every word would map to <|unk|>: a silent, useless tokenizer.
            raise ValueError(
                f"vocab_size: {vocab_size} leaves no room for words after the {len(vocab)} special, number "
                f"(0..{number_max}, bare and after a space) and byte tokens; use more than {len(vocab)}"
            )
        frequent = frequent[: vocab_size - len(vocab)]
    for token in frequent:
        vocab[token] = len(vocab)
    return models.WordLevel(vocab=vocab, unk_token=UNK)


def train_tokenizer(
    texts: Iterable[str],
    *,
    kind: str = "bpe",
    vocab_size: int = 2048,
    number_max: int = 1000,
    min_frequency: int = 1,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts` and wrap it with the chat template and special tokens.

    kind: "number_word" (one token per corpus word and per integer 0..number_max; vocab_size is the
    total, so it must exceed the specials, the numbers and the 256 byte symbols, 2264 with
    number_max=1000) or "bpe" (vocab_size is the total).
    """
    if kind not in ("number_word", "bpe"):
        raise ValueError(f"kind: expected 'number_word' or 'bpe', got {kind!r}")
    for name, value in (("vocab_size", vocab_size), ("number_max", number_max), ("min_frequency", min_frequency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    if kind == "number_word":
        tok = _byte_level_tokenizer(_number_word_model(texts, number_max, min_frequency, vocab_size))
    else:
        tok = _byte_level_tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=max(min_frequency, 1),
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=END_OF_TURN,
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """A saved tokenizer (ours or a real checkpoint's); it must carry a chat template."""
    from fastcomt.model_dir import tokenizer_dir_problem

    problem = tokenizer_dir_problem(path, "tokenizer")  # instead of transformers' "install sentencepiece"
    if problem is not None:
        raise FileNotFoundError(problem)
    tokenizer_file = Path(path) / "tokenizer.json"
    config = Path(path) / "tokenizer_config.json"
    if tokenizer_file.is_file() and config.is_file() and _saved_as_plain_tokenizer(config):
        # Ours are saved as plain `tokenizers` files; in a folder that also holds a model's config.json,
        # AutoTokenizer would pick the model type's tokenizer class (Qwen2Tokenizer) instead and
        # re-split our word-level vocabulary character by character.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer at {path} has no chat template; SFT needs one to build prompts")
    return tokenizer


def _saved_as_plain_tokenizer(tokenizer_config: Path) -> bool:
    try:
        settings = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # transformers 5 writes "TokenizersBackend" for a PreTrainedTokenizerFast; older ones the class name.
    return settings.get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast")


def encode_chat_examples(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[list[dict[str, str]]]
) -> list[tuple[list[int], list[bool]]]:
    """(token ids, train-on-this-token flags) per conversation; only the last (assistant) turn is trained.

    The prompt (everything before the last turn, with the generation prompt) and the response are
    tokenised separately and concatenated, so the prompt tokens are exactly those the model sees
    at generation time, and the response tokens end with the template's end-of-turn.
    """
    prompts, responses = [], []
    for messages in conversations:
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError(
                "conversations: expected each to end with an assistant message (the training target), got one that does not"
            )
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently inside the full conversation")
        prompts.append(prompt)
        responses.append(full[len(prompt) :])
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    return [(p + r, [False] * len(p) + [True] * len(r)) for p, r in zip(prompt_ids, response_ids)]
