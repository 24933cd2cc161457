"""Rehearsal for a tiny base model: execution documents mixed into SFT.

The demo's base model (train/pretrain.py) stands in for a pretrained LLM that can execute a worked
plan. A real LLM keeps that skill through a short fine-tune on plans; a 0.4M-parameter stand-in
does not: plan-only SFT that taught it to write 73% of held-out plans exactly also took its
execution of the *gold* plan from 34% to 3.5% of problems right (measured on the demo's base,
2000 plans, 2 epochs at lr 3e-4). Replaying documents of the base model's own kind during SFT
keeps the stand-in behaving like the model it stands in for: with as many replayed documents as
plans, the same SFT reached 62% exact plans and 47% gold-plan execution.

A replayed document is laid out like a pre-training document: the question of an *unrelated*
problem, then a plan and the marker as context (not trained), then the execution (trained, with
the end of turn). So the replay only rehearses "execute the plan in front of you"; which plan a
question needs is left to the CoMT examples, whose loss covers their plans.
"""

from __future__ import annotations

from typing import Any

from fastcomt.comt.offline import offline_meta_thought
from fastcomt.formats import marker_ids, prompt_ids, text_ids
from fastcomt.tasks import Problem, synthetic_problems

from .config import ReplayConfig
from .packing import Example, make_example

__all__ = ["ReplayConfig", "replay_problems", "replay_texts", "replay_examples", "end_of_turn_ids"]


def replay_problems(cfg: ReplayConfig) -> tuple[list[Problem], list[Problem]]:
    """(the documents' problems, the problems whose questions they are shown under)."""
    if isinstance(cfg.documents, bool) or not isinstance(cfg.documents, int) or cfg.documents < 0:
        raise ValueError(f"replay.documents: expected a non-negative int, got {cfg.documents!r}")
    documents = synthetic_problems(cfg.documents, seed=cfg.seed, families=cfg.families)
    questions = synthetic_problems(cfg.documents, seed=cfg.seed + 1, families=cfg.families)
    return documents, questions


def _plan(problem: Problem) -> str:
    return offline_meta_thought(problem).render().strip()


def replay_texts(cfg: ReplayConfig) -> list[str]:
    """Every text a replayed document holds (to train a tokenizer that can spell them)."""
    documents, questions = replay_problems(cfg)
    return [f"{q.question}\n{_plan(d)}\n{d.solution or ''}" for d, q in zip(documents, questions)]


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """What the chat template writes after an assistant message's content (e.g. `<|end|>` and a
    newline): the tokens that close a trained response, as in `train.tokenizer.encode_chat_examples`."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if not full.startswith(prompt + "x"):
        raise ValueError("tokenizer: its chat template does not write the assistant content verbatim")
    return text_ids(tokenizer, full[len(prompt) + 1 :])


def replay_examples(tokenizer: Any, cfg: ReplayConfig, *, row_tokens: int,
                    system_prompt: str | None = None) -> tuple[list[Example], int]:  # fmt: skip
    """(replayed documents as examples, number dropped for being longer than `row_tokens`).

    Ids are concatenated part by part (prompt, plan, marker, execution, end of turn), the same way
    rollouts build `[prompt + plan + marker]`, never by tokenising joined text."""
    documents, questions = replay_problems(cfg)
    marker = marker_ids(tokenizer)
    closing = end_of_turn_ids(tokenizer)
    examples: list[Example] = []
    for doc, other in zip(documents, questions):
        context = prompt_ids(tokenizer, other.question, system=system_prompt) + text_ids(tokenizer, _plan(doc)) + marker
        trained = text_ids(tokenizer, (doc.solution or "").strip()) + closing
        if len(context) + len(trained) <= row_tokens:
            examples.append(make_example(context + trained, [False] * len(context) + [True] * len(trained)))
    return examples, len(documents) - len(examples)
