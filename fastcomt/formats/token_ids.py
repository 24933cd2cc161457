"""Token ids of the formats' parts, and where each sampled token sits in the decoded text.

Both formats share the prompt: the question as the user turn of `comt.chat.sft_messages`, rendered
with the tokenizer's chat template and `add_generation_prompt=True`. Token ids are never produced
by tokenising joined text: the prompt, the plan and the marker are tokenised separately and their
ids concatenated, so the boundary between plan and execution is the same in SFT data, CCRL
rollouts, the trainer's recomputed log-probs and evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastcomt.comt.chat import sft_messages

from .text import EXECUTION_MARKER, MARKER_WORD

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "prompt_ids",
    "marker_ids",
    "text_ids",
    "execution_prefix_ids",
    "stop_token_ids",
    "marker_stop_token_id",
    "token_char_offsets",
    "end_of_turn_ids",
]

# --- token ids -----------------------------------------------------------------------------------


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if not callable(getattr(tokenizer, "apply_chat_template", None)) or not callable(
        getattr(tokenizer, "decode", None)
    ):
        raise TypeError(f"tokenizer: expected a transformers tokenizer, got {type(tokenizer).__name__}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("tokenizer: expected a chat template (set tokenizer.chat_template); prompts are chat turns")


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a piece of text on its own, without BOS/EOS (plans, markers, targets)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str, *, system: str | None = None) -> list[int]:
    """The prompt's ids: the chat template over `sft_messages(question)` with the generation prompt.

    Same ids as the prompt part of `fastcomt.tokenizer.encode_chat_examples` (the SFT data).
    """
    _check_tokenizer(tokenizer)
    text = tokenizer.apply_chat_template(
        sft_messages(question, system=system), tokenize=False, add_generation_prompt=True
    )
    return text_ids(tokenizer, text)


def marker_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The marker's ids, tokenised alone; ValueError when the tokenizer cannot spell it."""
    ids = text_ids(tokenizer, EXECUTION_MARKER)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and unk in ids):
        raise ValueError(
            f"tokenizer: cannot encode the execution marker {EXECUTION_MARKER!r} (got ids {ids}); "
            "train the tokenizer on texts that include fastcomt.formats.EXECUTION_MARKER"
        )
    return ids


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """What the chat template writes after an assistant message's content (e.g. `<|end|>` and a
    newline): the tokens that close a trained response, as in `fastcomt.tokenizer.encode_chat_examples`."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if not full.startswith(prompt + "x"):
        raise ValueError(
            "tokenizer: expected a chat template that writes the assistant content verbatim, got one that does not"
        )
    return text_ids(tokenizer, full[len(prompt) + 1 :])


def execution_prefix_ids(prompt: Sequence[int], plan: Sequence[int], marker: Sequence[int]) -> tuple[int, ...]:
    """[prompt + plan + marker]: what every execution of a plan continues."""
    return tuple(prompt) + tuple(plan) + tuple(marker)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The ids that end an assistant turn: the EOS token and the template's end-of-turn token.

    The end-of-turn token is read off the template: the special tokens it renders right after an
    assistant message's content (`<|end|>` for ours, `<|im_end|>` for Qwen's).
    """
    _check_tokenizer(tokenizer)
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    probe = "\x01probe\x01"
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}], tokenize=False
    )
    at = full.rfind(probe)
    if at >= 0:
        special = set(tokenizer.all_special_ids)
        for tok in text_ids(tokenizer, full[at + len(probe) :]):
            if tok in special:
                if tok not in ids:
                    ids.append(tok)
                break
    if not ids:
        raise ValueError("tokenizer: found no EOS or end-of-turn token to stop generation on")
    return tuple(ids)


def marker_stop_token_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The marker's word token ("Execution") when the tokenizer spells it as one token, else None.

    A plan stage stops on it, so a model trained on whole CoMT responses does not write its
    execution twice; without such a token the plan stage runs to the end-of-turn token and the
    text after the marker is dropped.
    """
    for tok in marker_ids(tokenizer):
        if tokenizer.decode([tok]).strip() == MARKER_WORD:
            return tok
    return None


DECODE_OPTIONS = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
# Tokens of left context each token is decoded with: enough for a multi-byte character (4 byte
# tokens) and for decoders that treat a sequence's first token specially (a leading-space marker).
_OFFSET_WINDOW = 8


def token_char_offsets(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text of `ids` (special tokens skipped) and each token's (start, end) in it.

    Offsets come from decoding, not from re-encoding the text: sampled ids need not be the ids the
    tokenizer would choose for that text. Token k ends where the decoding of ids[:k+1] ends in the
    full text; a prefix that ends inside a multi-byte character decodes to U+FFFD there, which
    does not count until the character completes. So special tokens get zero width, a byte token
    inside a character gets zero width, and the token completing the character covers it.

    Each prefix is not decoded whole (quadratic): token k is decoded with its few predecessors, and
    the window is placed in the text by the previous token's end. Where a window does not match
    the text there (a decoder that is not local), every prefix is decoded instead.
    """
    ids = list(ids)
    if not ids:
        return "", []
    text = tokenizer.decode(ids, **DECODE_OPTIONS)
    starts = [max(0, k - _OFFSET_WINDOW) for k in range(len(ids))]
    before = tokenizer.batch_decode([ids[s:k] for k, s in enumerate(starts)], **DECODE_OPTIONS)
    after = tokenizer.batch_decode([ids[s : k + 1] for k, s in enumerate(starts)], **DECODE_OPTIONS)
    offsets: list[tuple[int, int]] = []
    pos = 0
    for a, b in zip(before, after):
        # A window that starts inside a multi-byte character opens with U+FFFD for its stray
        # bytes; that character was placed by earlier tokens.
        stray = min(len(a) - len(a.lstrip("\ufffd")), len(b) - len(b.lstrip("\ufffd")))
        a, b = a[stray:], b[stray:]
        # Place the window: its text without token k ends where token k-1 ended (pending U+FFFD
        # of an unfinished character not counted).
        if text.startswith(a, pos - len(a)):
            anchor = pos - len(a)
        else:
            a_done = a.rstrip("\ufffd")
            if not text.startswith(a_done, pos - len(a_done)):
                return text, _prefix_offsets(tokenizer, ids, text)
            anchor = pos - len(a_done)
        if anchor < 0:
            return text, _prefix_offsets(tokenizer, ids, text)
        if text.startswith(b, anchor):
            end = anchor + len(b)
        else:
            b_done = b.rstrip("\ufffd")
            if not text.startswith(b_done, anchor):
                return text, _prefix_offsets(tokenizer, ids, text)
            end = anchor + len(b_done)
        end = max(end, pos)
        offsets.append((pos, end))
        pos = end
    if pos != len(text):
        return text, _prefix_offsets(tokenizer, ids, text)
    return text, offsets


def _prefix_offsets(tokenizer: PreTrainedTokenizerBase, ids: list[int], text: str) -> list[tuple[int, int]]:
    """Offsets from decoding every prefix of `ids` (the exact, quadratic fallback)."""
    prefixes = tokenizer.batch_decode([ids[: k + 1] for k in range(len(ids))], **DECODE_OPTIONS)
    offsets: list[tuple[int, int]] = []
    prev = 0
    for prefix in prefixes:
        end = len(prefix)
        if not text.startswith(prefix):
            end = len(prefix.rstrip("\ufffd"))
        end = min(max(end, prev), len(text))
        offsets.append((prev, end))
        prev = end
    return offsets
