"""Stage 0 of the CPU demo: a tiny base model that already executes arithmetic plans.

The paper starts from a pretrained LLM that knows arithmetic and how to carry out a worked plan.
No checkpoint can be downloaded here, so this stage makes one: a tiny Qwen2 built from a config,
trained on synthetic *execution text* with no questions in it, each document

    Variables:            (the quantities, by name)
    item_count = 2
    ...
    Steps:                (what to compute, names only)
    1. items_cost = item_count * item_price
    ...
    Answer: change
    Execution:
    items_cost = 2 * 5 = 10          (quantities computed as `name = a op b = c` lines)
    ...
    The answer is 30.

rendered as the assistant's turn of a chat whose user turn is the question of an *unrelated*
problem (or, for `own_question_fraction` of the documents, its own question): the model learns
the chat template and to execute whatever plan it is given. Under unrelated questions only, it
also learns that the question never matters, which a few hundred plan-only SFT examples cannot
undo (the demo's SFT model then wrote one plan for nearly every question). So the demo shows
half of the documents under their own question, as a real base model has read worked problems,
and with `own_question_response: cot` those hold the worked execution only, without a plan: the
base model solves questions step by step and executes plans put in front of it, but has never
written a plan for a question. With `other_question_loss_on: without_values` (the demo's choice)
the first token of a document under an unrelated question is context, not a target: trained on it,
the model learned to *begin* an answer to a question with a plan as well as with a worked solution,
and which one it began with was a near-tie that each seed broke its own way. The values of its
plan's `Variables:` lines, which that question does not hold, are context too. Mapping a new
question to its plan is what CoMT SFT teaches next (no held-out question occurs here), and how
reliably the model then executes its own plans is what CCRL trains.

`arithmetic_documents` adds plain documents of `name = a op b = c` lines from other problems'
worked solutions, trained on the results only: a real base model has read far more arithmetic
than worked problems, and without them the tiny model's arithmetic (and with it its CoT accuracy)
was weak and varied with the seed (recipes/DEMO.md, "The fourth fix").

The tokenizer (one token per word, one per integer up to `number_max`) is trained here on the
texts of every family (questions included) and saved with the model: like a real base model's,
it knows the words of problems the model has never been trained on.

Loss: `loss: torch` (the model's own head, the default for this stand-in stage on CPU, where the fused
kernels run in Triton's interpreter at a few milliseconds per token) or `loss: fused`.
A finished run is not repeated: a rerun returns the saved summary.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from fastcomt.atomic_io import write_json_atomic
from fastcomt.comt.chat import sft_messages
from fastcomt.comt.offline import offline_meta_thought
from fastcomt.config import config_from_dict, config_to_dict, load_config
from fastcomt.formats import EXECUTION_MARKER, end_of_turn_ids, marker_ids, prompt_ids, render_response, text_ids
from fastcomt.tasks import Problem, synthetic_problems
from fastcomt.tokenizer import encode_chat_examples, train_tokenizer
from fastcomt.train.checkpoint import save_checkpoint
from fastcomt.train.config import ModelConfig, OptimConfig, TokenizerConfig, check_optim_counts
from fastcomt.train.models import build_tiny_model
from fastcomt.train.packing import collate_row, epoch_plan, make_example
from fastcomt.train.schedule import cosine_scheduler
from fastcomt.train.sft import accumulate_step_gradients

__all__ = [
    "PretrainConfig",
    "execution_document",
    "execution_only_example",
    "without_first_response_token",
    "tokenizer_texts",
    "solution_equations",
    "check_arithmetic_counts",
    "arithmetic_texts",
    "results_only_example",
    "own_question_flags",
    "document_questions",
    "run_pretrain",
    "main",
]


@dataclass
class PretrainConfig:
    output_dir: str  # run folder: checkpoints/, tokenizer/, summary.json
    num_documents: int = 4000  # execution documents (plan, marker, execution), each laid out as `layout` says
    seed: int = 0  # document problems, their questions and data order (the tokenizer's problems: seed + 1)
    families: list[str] | None = None  # the documents' families (null: all)
    tokenizer_problems: int = 800  # problems of every family whose text trains the tokenizer
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(
        default_factory=lambda: TokenizerConfig(kind="number_word", number_max=1000, vocab_size=4096)
    )  # vocab_size caps the whole vocabulary: 2264 specials, numbers and bytes, then the words
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3, row_tokens=512, tokens_per_step=4096))
    # How documents are laid out: "unrelated_question": as the assistant turn of a chat whose user
    # turn is the question of *another* problem (so the model learns the chat template and to
    # execute the plan in front of it whatever question surrounds it, never which plan a question
    # needs); "plain": bare documents.
    layout: Literal["unrelated_question", "plain"] = "unrelated_question"
    # With layout "unrelated_question": the fraction of documents shown under their *own* question
    # instead. Without any, the model learns that the question never matters and plan-only SFT on
    # a few hundred problems cannot undo it (it keeps writing one plan, or plans with the wrong
    # numbers, for every question); a pretrained LLM has likewise read worked problems before.
    own_question_fraction: float = 0.0
    # What a document under its own question holds: "comt", its plan and execution like every other
    # document; "cot", its worked execution only (no plan). With "cot" the base model has read
    # worked solutions of questions and executed plans, but never written a plan for a question:
    # mapping a question to its plan is left for CoMT SFT to teach, as in the paper, where the
    # base LLM can solve problems step by step and has never seen a meta-thought.
    own_question_response: Literal["comt", "cot"] = "comt"
    # What a document under *another* problem's question trains: "response", its plan, marker and
    # execution; "after_first_token", all of that but the response's first token; "execution", the
    # execution only (prompt, plan and marker are context, as in SFT's rehearsal data,
    # recipes/replay.py). With "response" the model also learns to *start* an answer with a plan,
    # which competes with the worked solutions of own-question documents for the first token of an
    # answer (a tie each seed broke its own way). "after_first_token" removes exactly that: the model
    # learns to write a plan once one is begun, never to begin one. "execution" removes it too, but
    # then the model never writes a plan at all and CoMT SFT must teach plan syntax from scratch.
    # "without_values" (the demo's): "after_first_token" with the values of the plan's
    # `Variables:` lines as context too. Under an unrelated question nothing before them predicts
    # them; trained on them, whether the model learned to fetch a value from the plan depended on
    # the seed (recipes/DEMO.md, "The third fix").
    other_question_loss_on: Literal["response", "after_first_token", "without_values", "execution"] = "response"
    # Arithmetic documents: `arithmetic_lines` lines `name = a op b = c` each, taken from the worked
    # solutions of a draw of problems of their own (seed + 3, the same families), trained on the
    # results `c` only (the operands, which nothing before them predicts, are context). A document
    # holds a few results among ~110 tokens of copying; these hold one every ~9 tokens. A real base
    # model has read far more arithmetic than worked problems; 0: none.
    arithmetic_documents: int = 0
    arithmetic_lines: int = 16  # lines per arithmetic document (~150 tokens)
    loss: Literal["torch", "fused"] = "torch"  # torch: own head, trained tokens; fused: linear_cross_entropy kernel
    progress: bool = True  # progress bar


def execution_document(problem: Problem) -> str:
    """One pretraining document: the problem's plan, the execution marker and its execution."""
    return render_response("comt", problem.solution or "", offline_meta_thought(problem).render())


def execution_only_example(tokenizer, question: str, document: str) -> tuple[list[int], list[bool]]:
    """(ids, trained flags) of a document under a question, loss on its execution and end of turn
    only: prompt, plan and marker concatenated part by part as a rollout builds
    `[prompt + plan + marker]`, so the context is exactly what the model later executes from."""
    plan, found, execution = document.partition(EXECUTION_MARKER)
    if not found:
        raise ValueError(f"document: expected the execution marker {EXECUTION_MARKER!r}, got none")
    context = prompt_ids(tokenizer, question) + text_ids(tokenizer, plan.strip()) + marker_ids(tokenizer)
    trained = text_ids(tokenizer, execution.strip()) + end_of_turn_ids(tokenizer)
    return context + trained, [False] * len(context) + [True] * len(trained)


def without_first_response_token(example: tuple[list[int], list[bool]]) -> tuple[list[int], list[bool]]:
    """The same (ids, trained flags) with the response's first token untrained: the choice of how
    to begin an answer is left to other documents."""
    ids, flags = example
    if True not in flags:
        raise ValueError("example: expected at least one trained token, got none")
    flags = list(flags)
    flags[flags.index(True)] = False
    return ids, flags


def without_variable_values(tokenizer, example: tuple[list[int], list[bool]]) -> tuple[list[int], list[bool]]:
    """The same (ids, trained flags) with the values of the plan's `Variables:` lines untrained (the
    tokens after ` =` up to the end of the line, between `Variables` and `Steps`)."""
    ids, flags = example
    equals, newline = tokenizer.convert_tokens_to_ids("Ġ="), tokenizer.convert_tokens_to_ids("Ċ")
    section = (tokenizer.convert_tokens_to_ids("Variables"), tokenizer.convert_tokens_to_ids("Steps"))
    if {None, tokenizer.unk_token_id} & {equals, newline, *section}:  # a missing token: None or unk
        raise ValueError("tokenizer: expected tokens for ' =', a newline, 'Variables' and 'Steps'")
    flags = list(flags)
    inside, in_value = False, False
    for i, t in enumerate(ids):
        if t == section[0]:
            inside = True
        elif t == section[1]:
            break
        elif inside and t == newline:
            in_value = False
        elif inside and in_value:
            flags[i] = False
        elif inside and t == equals:
            in_value = True
    return ids, flags


def solution_equations(problems: Sequence[Problem]) -> list[str]:
    """The `name = a op b = c` lines of the problems' worked solutions, in order."""
    lines = []
    for p in problems:
        lines += [line for line in render_response("cot", p.solution or "").splitlines() if line.count(" = ") == 2]
    return lines


def check_arithmetic_counts(documents: int, lines_per_document: int) -> None:
    """`arithmetic_documents` >= 0 and `arithmetic_lines` >= 1, or a ValueError naming the key."""
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < 0:
        raise ValueError(f"arithmetic_documents: expected a non-negative int, got {documents!r}")
    if isinstance(lines_per_document, bool) or not isinstance(lines_per_document, int) or lines_per_document < 1:
        raise ValueError(f"arithmetic_lines: expected a positive int, got {lines_per_document!r}")


def arithmetic_texts(n: int, lines_per_document: int, *, seed: int, families: Sequence[str] | None) -> list[str]:
    """`n` documents of `lines_per_document` arithmetic lines each, shuffled across problems (so a
    line's operands are never the line above's result): from problems drawn with `seed`."""
    check_arithmetic_counts(n, lines_per_document)
    needed = n * lines_per_document
    if needed == 0:
        return []
    draw = needed // 2 + 64  # a solution has two to four such lines
    lines = solution_equations(synthetic_problems(draw, seed=seed, families=families))
    while len(lines) < needed:  # a larger draw extends the smaller one (synthetic_problems)
        draw *= 2
        lines = solution_equations(synthetic_problems(draw, seed=seed, families=families))
    lines = lines[:needed]
    random.Random(seed).shuffle(lines)
    return ["\n".join(lines[i : i + lines_per_document]) for i in range(0, needed, lines_per_document)]


def results_only_example(tokenizer, document: str) -> tuple[list[int], list[bool]]:
    """(ids, trained flags) of a plain arithmetic document: only the token after each line's second
    ` =` (the result `c` of `name = a op b = c`) is trained."""
    equals, newline = tokenizer.convert_tokens_to_ids("Ġ="), tokenizer.convert_tokens_to_ids("Ċ")
    if {None, tokenizer.unk_token_id} & {equals, newline}:  # a missing token: None or unk
        raise ValueError("tokenizer: expected tokens for ' =' and a newline")
    ids = tokenizer(document, add_special_tokens=False)["input_ids"]
    flags, seen = [False] * len(ids), 0
    for i, t in enumerate(ids):
        if t == newline:
            seen = 0
        elif t == equals:
            seen += 1
            if seen == 2 and i + 1 < len(ids):
                flags[i + 1] = True
    return ids, flags


def tokenizer_texts(problems: Sequence[Problem]) -> list[str]:
    """Questions and documents: every word a synthetic prompt or response can hold."""
    return [f"{p.question}\n{execution_document(p)}" for p in problems]


def check_document_settings(cfg: PretrainConfig) -> None:
    """The document counts and the layout fraction, or a ValueError naming the key: checked before
    any work (and by the demo before any stage, which draws its held-out split from them)."""
    own_question_flags(0, cfg.own_question_fraction)
    check_arithmetic_counts(cfg.arithmetic_documents, cfg.arithmetic_lines)
    if cfg.num_documents < 1:
        raise ValueError(f"num_documents: expected >= 1, got {cfg.num_documents}")


def own_question_flags(n: int, own_fraction: float, *, seed: int = 0) -> list[bool]:
    """Which of `n` documents are shown under their own question (each with probability
    `own_fraction`, seeded, so the layout is reproducible)."""
    if isinstance(own_fraction, bool) or not isinstance(own_fraction, (int, float)) or not 0.0 <= own_fraction <= 1.0:
        raise ValueError(f"own_question_fraction: expected a number in [0, 1], got {own_fraction!r}")
    rng = random.Random(seed)
    return [rng.random() < own_fraction for _ in range(n)]


def document_questions(
    documents: Sequence[Problem], others: Sequence[Problem], own_fraction: float, *, seed: int = 0
) -> list[str]:
    """The user turn of each document: its own question with probability `own_fraction`, else the
    question of the problem at the same index of `others` (see `own_question_flags`)."""
    if len(documents) != len(others):
        raise ValueError(f"others: expected {len(documents)} problems (one per document), got {len(others)}")
    flags = own_question_flags(len(documents), own_fraction, seed=seed)
    return [own.question if is_own else other.question for own, other, is_own in zip(documents, others, flags)]


def run_pretrain(
    config: PretrainConfig | Mapping[str, Any], on_step: Callable[[int, Any, Any], None] | None = None
) -> dict[str, Any]:
    """Train the base model and its tokenizer; returns the summary (model under `<output_dir>/model`).

    on_step: called as on_step(step, model, tokenizer) after every optimizer step (learning curves;
    the model is in training mode again when it returns).
    """
    cfg = config if isinstance(config, PretrainConfig) else config_from_dict(PretrainConfig, config)
    out_dir = Path(cfg.output_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        with open(summary_path, encoding="utf-8") as f:
            return json.load(f)
    check_document_settings(cfg)
    check_optim_counts(cfg.optim)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()

    doc_problems = synthetic_problems(cfg.num_documents, seed=cfg.seed, families=cfg.families)
    docs = [execution_document(p) for p in doc_problems]
    # Every family's text (held-out ones too) trains the tokenizer; seed + 1: none of these
    # problems is a training document.
    vocab_problems = synthetic_problems(cfg.tokenizer_problems, seed=cfg.seed + 1)
    tokenizer = train_tokenizer(
        tokenizer_texts(vocab_problems) + docs,
        kind=cfg.tokenizer.kind,
        vocab_size=cfg.tokenizer.vocab_size,
        number_max=cfg.tokenizer.number_max,
        min_frequency=cfg.tokenizer.min_frequency,
    )
    eos = tokenizer.eos_token_id
    if cfg.layout == "unrelated_question":
        # Same layout as SFT examples (the prompt is not trained, the answer ends with the
        # end-of-turn); the questions come from a separate draw (seed + 2), so none is paired
        # with its own plan.
        others = synthetic_problems(len(docs), seed=cfg.seed + 2, families=cfg.families)
        random.Random(cfg.seed).shuffle(others)
        own = own_question_flags(len(docs), cfg.own_question_fraction, seed=cfg.seed)
        questions = [p.question if is_own else o.question for p, o, is_own in zip(doc_problems, others, own)]
        responses = [
            render_response("cot", p.solution or "") if is_own and cfg.own_question_response == "cot" else d
            for p, d, is_own in zip(doc_problems, docs, own)
        ]
        encoded = encode_chat_examples(tokenizer, [sft_messages(q, r) for q, r in zip(questions, responses)])
        if cfg.other_question_loss_on == "execution":
            encoded = [
                pair if is_own else execution_only_example(tokenizer, q, r)
                for pair, q, r, is_own in zip(encoded, questions, responses, own)
            ]
        elif cfg.other_question_loss_on == "after_first_token":
            encoded = [pair if is_own else without_first_response_token(pair) for pair, is_own in zip(encoded, own)]
        elif cfg.other_question_loss_on == "without_values":
            encoded = [
                pair if is_own else without_variable_values(tokenizer, without_first_response_token(pair))
                for pair, is_own in zip(encoded, own)
            ]
    else:
        encoded = [
            (ids + [eos], [True] * (len(ids) + 1)) for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]
        ]
    arithmetic = arithmetic_texts(
        cfg.arithmetic_documents, cfg.arithmetic_lines, seed=cfg.seed + 3, families=cfg.families
    )
    encoded += [results_only_example(tokenizer, doc) for doc in arithmetic]
    examples = [make_example(ids, flags) for ids, flags in encoded if len(ids) <= cfg.optim.row_tokens]
    if not examples:
        raise ValueError(f"optim.row_tokens={cfg.optim.row_tokens}: no document fits in a row")
    lengths = [ex.num_tokens for ex in examples]
    plans = [
        epoch_plan(
            lengths, seed=cfg.seed, epoch=e, row_tokens=cfg.optim.row_tokens, tokens_per_step=cfg.optim.tokens_per_step
        )
        for e in range(cfg.optim.epochs)
    ]
    total_steps = sum(len(p) for p in plans)
    if cfg.optim.max_steps is not None:
        total_steps = min(total_steps, cfg.optim.max_steps)

    model = build_tiny_model(cfg.model, len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    scheduler = cosine_scheduler(
        optimizer, warmup_steps=cfg.optim.warmup_steps, total_steps=total_steps, min_lr_ratio=cfg.optim.min_lr_ratio
    )
    step, tokens, last_loss = 0, 0, float("nan")
    bar = tqdm(total=total_steps, disable=not cfg.progress, desc="pretrain", unit="step")
    for plan in plans:
        for step_rows in plan:
            if step >= total_steps:
                break
            rows = [collate_row([examples[i] for i in row]) for row in step_rows]
            loss_sum, n_loss = accumulate_step_gradients(
                model, rows, loss=cfg.loss, rows_per_forward=cfg.optim.rows_per_forward
            )
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += sum(row.num_tokens for row in rows)
            last_loss = loss_sum / max(n_loss, 1)
            bar.set_postfix(loss=f"{last_loss:.3f}")
            bar.update(1)
            if on_step is not None:
                on_step(step, model, tokenizer)
                model.train()
    bar.close()

    checkpoint = save_checkpoint(
        out_dir / "checkpoints",
        step,
        model=model,
        tokenizer=tokenizer,
        trainer_state={"config": config_to_dict(cfg)},
        keep_last=1,
    )
    # The tokenizer also goes to a folder of its own: loaded from a model folder, AutoTokenizer
    # follows the model's config.json to the model family's tokenizer class instead of ours.
    tokenizer_dir = out_dir / "tokenizer"
    if not tokenizer_dir.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-tokenizer-", dir=out_dir))
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, tokenizer_dir)
    seconds = time.perf_counter() - started
    summary = {
        "model_dir": str(checkpoint / "model"),
        "tokenizer_dir": str(tokenizer_dir),
        "steps": step,
        "documents": len(examples),
        "train_tokens": tokens,
        "final_loss": last_loss,
        "seconds": round(seconds, 2),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
    }
    write_json_atomic(summary_path, summary)
    return summary


def main(config: str | None = None, overrides: Sequence[str] = ()) -> int:
    """`fastcomt pretrain --config FILE [key=value ...]`: train and print the summary."""
    if config is None:
        raise ValueError("config: expected a YAML file describing the pretraining run")
    print(json.dumps(run_pretrain(load_config(config, PretrainConfig, list(overrides or ()))), indent=2))
    return 0
