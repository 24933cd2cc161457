"""The SFT recipe (CoMT or CoT targets): one training loop, readable top to bottom.

    run_sft(load_config("configs/sft-synthetic-comt.yaml", SFTConfig))

1. records (JSONL from fastcomt.comt) -> chat conversations -> token ids, loss on the response only;
2. a deterministic plan per epoch: shuffle, pack examples into rows (positions restart, attention
   stays inside each example), group rows into optimizer steps by a token budget;
3. model (a tiny Qwen2/Llama from the config, or a checkpoint), AdamW, warm-up + cosine;
4. resume from the newest checkpoint (weights, optimizer, scheduler, RNG, data position);
5. per step: for each packed row, hidden states from the base model, then the fused LM-head
   cross-entropy (no [tokens, vocab] logits; `loss: auto` runs it on a GPU and the chunked
   plain-torch head on a CPU, train/loss_head.py), summed and divided by the step's response-token
   count (so the loss is the same whichever way the tokens were split into rows); clip, step, log;
   checkpoint atomically every `save_every` steps and at the end; SIGINT/SIGTERM end the run after
   the current step with a checkpoint (train/interrupt.py);
6. the final model (weights, tokenizer, this config) to `<output_dir>/final/` (train/final_model.py).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fastcomt.atomic_io import write_json_atomic
from fastcomt.comt.build import build_comt_data, build_settings
from fastcomt.comt.chat import sft_messages
from fastcomt.comt.records import ComtRecord
from fastcomt.config import config_from_dict, config_to_dict, load_config
from fastcomt.device import resolve_device
from fastcomt.distributed import (
    DistContext,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    clip_grad_norm,
    init_distributed,
    shard_model,
    shutdown_distributed,
    unwrap_grad_norm,
)
from fastcomt.distributed.data import rank_share
from fastcomt.distributed.sharded_state import full_model_copy
from fastcomt.formats import EXECUTION_MARKER, end_of_turn_ids, marker_ids, prompt_ids, text_ids
from fastcomt.jsonl import iter_jsonl_dicts
from fastcomt.kernels import linear_cross_entropy
from fastcomt.tokenizer import encode_chat_examples, load_tokenizer, train_tokenizer

from .checkpoint import save_checkpoint, truncate_metrics
from .config import DataConfig, DataFile, SFTConfig, check_optim_counts
from .final_model import write_final_model
from .interrupt import EXIT_INTERRUPTED, StopOnSignal, resume_hint
from .loss_head import describe_loss_head, resolve_loss_head
from .models import build_config, build_device, build_model, hidden_states, lm_head_weight
from .packing import (
    IGNORE_INDEX,
    Example,
    PackedRow,
    collate_row,
    epoch_plan,
    make_example,
    stack_rows,
    without_targets,
)
from .resume import resume_newest_loadable
from .schedule import cosine_scheduler
from .torch_head import chunked_cross_entropy_sum

__all__ = [
    "run_sft",
    "load_training_records",
    "cut_off_tail",
    "prepare_tokenizer",
    "encode_records",
    "accumulate_step_gradients",
    "packed_loss_sum",
    "chunked_loss_sum",
    "full_logits_loss_sum",
    "row_loss_sum",
    "main",
]


def run_sft(config: SFTConfig | Mapping[str, Any], *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Train (or resume) to the end of the configured epochs; returns the run summary.

    stop_after_steps: checkpoint and return once this many optimizer steps are done in total, as a
    preemption would (used to test exact resume; a later call continues from there).

    Under torchrun (WORLD_SIZE > 1) the model is sharded with FSDP2 and each rank trains on its share
    of every step's packed rows; the step (its rows, its token budget) and the loss normaliser are the
    one-process ones, so the losses match a one-process run. Rank 0 logs and writes; checkpoints are
    sharded (torch.distributed.checkpoint) and resume on any number of processes.
    """
    cfg = config if isinstance(config, SFTConfig) else config_from_dict(SFTConfig, config)
    device = resolve_device(cfg.device)
    ctx, device = init_distributed(device)
    summary = _run_sft(cfg, ctx, device, stop_after_steps=stop_after_steps)
    # only after a run that finished on this rank: a rank that failed must not wait in a barrier for
    # ranks that are waiting for it elsewhere (it exits, and torchrun stops the others)
    shutdown_distributed(ctx)
    return summary


def _run_sft(cfg: SFTConfig, ctx: DistContext, device: torch.device, *, stop_after_steps: int | None) -> dict[str, Any]:
    check_optim_counts(cfg.optim)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    autocast_dtype = torch.bfloat16 if device.type == "cuda" and cfg.precision == "bf16" else None
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    loss_head = resolve_loss_head(cfg.loss, device)

    # 1. Data: records -> tokenizer -> examples (too-long examples are dropped and counted). Under
    # torchrun rank 0 goes first: it may build the data file and train the tokenizer, which the
    # other ranks then read instead of writing the same files at the same time.
    skipped: dict[str, int] = {}
    if not ctx.is_main:
        barrier(ctx)
    records = load_training_records(cfg.data, skipped=skipped)
    extra_records = [load_extra_records(f, f"data.extra[{i}]", skipped=skipped) for i, f in enumerate(cfg.data.extra)]
    tokenizer = prepare_tokenizer(cfg, records + [r for rs in extra_records for r in rs], out_dir / "tokenizer")
    if ctx.is_main:
        barrier(ctx)
    examples, dropped = encode_records(
        tokenizer,
        records,
        row_tokens=cfg.optim.row_tokens,
        system_prompt=cfg.data.system_prompt,
        plan_end=cfg.data.plan_end,
    )
    extra: list[Example] = []
    for data_file, file_records in zip(cfg.data.extra, extra_records):  # appended in order, each with its loss mask
        more, more_dropped = encode_records(
            tokenizer,
            file_records,
            row_tokens=cfg.optim.row_tokens,
            system_prompt=cfg.data.system_prompt,
            plan_end=cfg.data.plan_end,
            loss_on=data_file.loss_on,
        )
        extra, dropped = extra + more, dropped + more_dropped
    examples = examples + extra
    if not examples:
        raise ValueError(f"data.train: no example fits optim.row_tokens={cfg.optim.row_tokens} ({dropped} dropped)")
    lengths = [ex.num_tokens for ex in examples]

    # 2. The plan of every epoch (deterministic), hence the schedule's length.
    plans = [
        epoch_plan(
            lengths,
            seed=cfg.seed,
            epoch=e,
            row_tokens=cfg.optim.row_tokens,
            tokens_per_step=cfg.optim.tokens_per_step,
            shuffle=cfg.data.shuffle,
        )
        for e in range(cfg.optim.epochs)
    ]
    total_steps = sum(len(plan) for plan in plans)
    if cfg.optim.max_steps is not None:
        total_steps = min(total_steps, cfg.optim.max_steps)

    # 3. Model, optimizer, schedule.
    model = build_model(
        build_config(cfg.model, ctx, device),
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        device=build_device(ctx, device),
    )
    model = shard_model(model, ctx, mixed_precision=autocast_dtype is not None)  # FSDP2 under torchrun, else as is
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
        fused=device.type == "cuda",
    )
    scheduler = cosine_scheduler(
        optimizer, warmup_steps=cfg.optim.warmup_steps, total_steps=total_steps, min_lr_ratio=cfg.optim.min_lr_ratio
    )

    # 4. Resume: the checkpoint holds the position in the plan and the counters.
    ckpt_root = out_dir / "checkpoints"
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "step_in_epoch": 0,
        "tokens": 0,
        "loss_tokens": 0,
        "train_seconds": 0.0,
    }
    latest = None
    if cfg.resume:  # the newest checkpoint that loads (a damaged newer one is named and skipped)
        latest, loaded = resume_newest_loadable(
            ckpt_root, model=model, optimizer=optimizer, scheduler=scheduler, map_location=device, rank=ctx.rank
        )
        state.update(loaded)
    if latest is not None:
        if state.get("total_steps", total_steps) != total_steps:
            raise ValueError(
                f"output_dir: the checkpoint {latest} was made for a {state['total_steps']}-step run, this config "
                f"plans {total_steps} steps (data, tokenizer or optim changed); use a new output_dir or resume: false"
            )
    metrics_path = out_dir / "metrics.jsonl"
    if ctx.is_main:
        truncate_metrics(metrics_path, after_step=state["step"])

    # 5. The loop.
    def save(interrupted: bool) -> Path:
        trainer_state = {k: state[k] for k in ("epoch", "step_in_epoch", "tokens", "loss_tokens", "train_seconds")}
        trainer_state.update(total_steps=total_steps, interrupted=interrupted, config=config_to_dict(cfg))
        return save_checkpoint(
            ckpt_root,
            state["step"],
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            tokenizer=tokenizer,
            trainer_state=trainer_state,
            keep_last=cfg.keep_last,
            dist_ctx=ctx,
        )

    last_loss = float("nan")
    checkpoint = latest
    saved_at = state["step"] if latest is not None else -1
    interrupted = False
    stop = StopOnSignal()
    bar = tqdm(
        total=total_steps,
        initial=state["step"],
        disable=not cfg.progress or not ctx.is_main,
        desc=f"sft [{describe_loss_head(cfg.loss, loss_head)}]",
        unit="step",
    )
    with stop, open(metrics_path if ctx.is_main else os.devnull, "a", encoding="utf-8") as metrics:
        while state["step"] < total_steps and not interrupted:
            plan = plans[state["epoch"]]
            started = time.perf_counter()
            rows = [collate_row([examples[i] for i in row]).to(device) for row in plan[state["step_in_epoch"]]]
            if ctx.enabled:  # this rank's rows; the normaliser stays the whole step's token count
                mine, padding = rank_share(rows, ctx)
                loss_sum, step_loss_tokens = accumulate_step_gradients(
                    model,
                    mine,
                    autocast_dtype,
                    loss=loss_head,
                    step_loss_tokens=sum(r.num_loss_tokens for r in rows),
                    padding_rows=[rows[0]] * padding,
                    rows_per_forward=cfg.optim.rows_per_forward,
                )
                loss_sum = all_reduce_sum(ctx, [loss_sum])[0]
                grad_norm = unwrap_grad_norm(clip_grad_norm(model, cfg.optim.grad_clip))
            else:
                loss_sum, step_loss_tokens = accumulate_step_gradients(
                    model, rows, autocast_dtype, loss=loss_head, rows_per_forward=cfg.optim.rows_per_forward
                )
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - started

            step_tokens = sum(row.num_tokens for row in rows)
            last_loss = loss_sum / max(step_loss_tokens, 1)
            state["step"] += 1
            state["step_in_epoch"] += 1
            if state["step_in_epoch"] == len(plan):
                state["epoch"], state["step_in_epoch"] = state["epoch"] + 1, 0
            state["tokens"] += step_tokens
            state["loss_tokens"] += step_loss_tokens
            state["train_seconds"] += seconds
            metrics.write(
                json.dumps(
                    {
                        "step": state["step"],
                        "epoch": state["epoch"],
                        "loss": last_loss,
                        "lr": lr,
                        "grad_norm": float(grad_norm),
                        "tokens": step_tokens,
                        "loss_tokens": step_loss_tokens,
                        "rows": len(rows),
                        "tokens_per_s": step_tokens / seconds,
                        "seconds": seconds,
                    }
                )
                + "\n"
            )
            metrics.flush()
            bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{step_tokens / seconds:.0f}")
            bar.update(1)

            # A simulated preemption only counts before the natural end of the run.
            interrupted = stop_after_steps is not None and stop_after_steps <= state["step"] < total_steps
            interrupted = interrupted or (stop.requested is not None and state["step"] < total_steps)
            interrupted = bool(all_reduce_max(ctx, int(interrupted)))  # a signal to any rank stops them all
            if interrupted or (cfg.save_every and state["step"] % cfg.save_every == 0):
                checkpoint = save(interrupted)
                saved_at = state["step"]
    bar.close()
    if saved_at != state["step"]:
        checkpoint = save(False)
    final = None
    if not interrupted:  # the stable place the next stage reads (train/final_model.py)
        plain = full_model_copy(model, ctx) if ctx.enabled else model  # full weights gathered on rank 0
        if ctx.is_main:
            final = write_final_model(out_dir, model=plain, tokenizer=tokenizer, config=config_to_dict(cfg))
        barrier(ctx)

    summary = {
        "output_dir": str(out_dir),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "final_model": str(final) if final else None,
        "interrupted": interrupted,
        "stopped_by": stop.requested if interrupted else None,  # SIGINT / SIGTERM, or None
        "loss_head": loss_head,
        "skipped_records": skipped,
        "steps": state["step"],
        "total_steps": total_steps,
        "epochs": cfg.optim.epochs,
        "examples": len(examples),
        "extra_examples": len(extra),  # of `examples`: from the data.extra files
        "dropped_too_long": dropped,
        "train_tokens": state["tokens"],
        "loss_tokens": state["loss_tokens"],
        "train_seconds": round(state["train_seconds"], 3),
        "tokens_per_second": round(state["tokens"] / state["train_seconds"], 1) if state["train_seconds"] else 0.0,
        "final_loss": last_loss,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "device": str(device),
        "world_size": ctx.world_size,
    }
    if ctx.is_main:
        write_json_atomic(out_dir / "summary.json", summary)
    return summary


def accumulate_step_gradients(
    model: torch.nn.Module,
    rows: Sequence[PackedRow],
    autocast_dtype: torch.dtype | None = None,
    *,
    loss: str = "fused",
    step_loss_tokens: int | None = None,
    padding_rows: Sequence[PackedRow] = (),
    rows_per_forward: int = 1,
) -> tuple[float, int]:
    """Backward of the step's mean loss over all its response tokens, `rows_per_forward` packed
    rows per pass (stacked, packing.stack_rows).

    Each pass's summed loss is divided by the whole step's response-token count (known before the
    first backward), so the gradient is the same however the step's examples were split into rows
    and passes. Returns (summed loss, response tokens).

    Under FSDP each rank passes its own rows with `step_loss_tokens`, the count over every rank's
    rows; `padding_rows` go through with nothing to predict (weight 0), so that every rank makes the
    same number of passes (each pass is a collective: all-gathers forward, reduce-scatters backward).
    """
    if not isinstance(rows_per_forward, int) or isinstance(rows_per_forward, bool) or rows_per_forward < 1:
        raise ValueError(f"optim.rows_per_forward: expected a positive int, got {rows_per_forward!r}")
    if step_loss_tokens is None:
        step_loss_tokens = sum(row.num_loss_tokens for row in rows)
    passes = list(rows) + [without_targets(row) for row in padding_rows]
    loss_sum = 0.0
    for start in range(0, len(passes), rows_per_forward):
        batch = stack_rows(passes[start : start + rows_per_forward])
        batch_loss = row_loss_sum(model, batch, loss, autocast_dtype)
        (batch_loss / max(step_loss_tokens, 1)).backward()
        loss_sum += batch_loss.item()
    return loss_sum, step_loss_tokens


def packed_loss_sum(model: torch.nn.Module, row: PackedRow, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed cross-entropy over the row's response tokens, through the fused LM-head kernel.

    The base model gives hidden states; the LM head is never called, so [tokens, vocab] logits
    never exist. Without an attention mask and with no cache, transformers reads the restarting
    position_ids as sequence boundaries (block-diagonal causal attention).
    """
    device_type = row.input_ids.device.type
    with torch.autocast(
        device_type=device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
    ):
        hidden = hidden_states(model, input_ids=row.input_ids, position_ids=row.position_ids, use_cache=False)
    weight = lm_head_weight(model)
    if autocast_dtype is not None:  # bf16 operands for the kernel's GEMMs; gradients flow back to fp32 params
        hidden, weight = hidden.to(autocast_dtype), weight.to(autocast_dtype)
    return linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, row.targets.reshape(-1), reduction="sum")


def full_logits_loss_sum(
    model: torch.nn.Module, row: PackedRow, autocast_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The same summed cross-entropy through the model's own LM head module, upcast to fp32 for the
    softmax: the plain-torch path (`loss: torch`). The head runs on the tokens that have a target
    only (the [trained tokens, vocab] logits are in memory at once): a prompt's, a plan's context's
    or a padding segment's logits would be computed for nothing, and in the demo's rows that was a
    sixth of a step's time."""
    device_type = row.input_ids.device.type
    with torch.autocast(
        device_type=device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
    ):
        hidden = hidden_states(model, input_ids=row.input_ids, position_ids=row.position_ids, use_cache=False)
        targets = row.targets.reshape(-1)
        trained = targets != IGNORE_INDEX
        logits = model.get_output_embeddings()(hidden.reshape(-1, hidden.shape[-1])[trained])
    return F.cross_entropy(logits.float(), targets[trained], reduction="sum")


def row_loss_sum(
    model: torch.nn.Module, row: PackedRow, loss: str = "fused", autocast_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Summed cross-entropy of one packed row: `loss` "fused" (the kernel), "chunked" (plain torch,
    bounded memory) or "torch" (the model's own head, on the trained tokens)."""
    if loss == "fused":
        return packed_loss_sum(model, row, autocast_dtype)
    if loss == "chunked":
        return chunked_loss_sum(model, row, autocast_dtype)
    if loss == "torch":
        return full_logits_loss_sum(model, row, autocast_dtype)
    raise ValueError(f"loss: expected 'fused', 'chunked' or 'torch', got {loss!r}")


def chunked_loss_sum(model: torch.nn.Module, row: PackedRow, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The same summed cross-entropy in plain torch, one chunk of tokens' logits at a time
    (train/torch_head.py): hidden states from the base model, the LM head weight, recompute in backward."""
    device_type = row.input_ids.device.type
    with torch.autocast(
        device_type=device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
    ):
        hidden = hidden_states(model, input_ids=row.input_ids, position_ids=row.position_ids, use_cache=False)
    weight = lm_head_weight(model)
    if autocast_dtype is not None:
        hidden, weight = hidden.to(autocast_dtype), weight.to(autocast_dtype)
    return chunked_cross_entropy_sum(
        hidden.reshape(-1, hidden.shape[-1]), weight, row.targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def read_record_file(path: Path, where: str, *, skipped: dict[str, int] | None = None) -> list[ComtRecord]:
    """Every complete record of one SFT data file. skipped: filled with what was not read and why (a
    cut-off last line: "cut_off_last_line", counted over all files); each skip is also printed, so a
    damaged file never trains silently on fewer records."""
    records = []
    for number, row in enumerate(iter_jsonl_dicts(path), start=1):  # a bad line raises naming path:line
        try:
            records.append(ComtRecord.from_dict(row))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {path}: record {number}: {exc}") from exc
    torn = cut_off_tail(path)
    if torn:
        if skipped is not None:
            skipped["cut_off_last_line"] = skipped.get("cut_off_last_line", 0) + 1
        print(
            f"{where}: {path}: skipped 1 cut-off last line ({torn} bytes without a newline: a write that "
            f"did not finish); training on the {len(records)} complete records",
            file=sys.stderr,
            flush=True,
        )
    return records


def load_training_records(data: DataConfig, *, skipped: dict[str, int] | None = None) -> list[ComtRecord]:
    """The records of `data.train`, built first from `data.build` when the file does not exist yet.

    skipped: filled with what was not read and why (a cut-off last line: "cut_off_last_line"); each
    skip is also printed, so a damaged file never trains silently on fewer records.
    """
    path = Path(data.train)
    if not path.exists():
        if data.build is None:
            raise FileNotFoundError(f"data.train: {path} does not exist and data.build is not set")
        build_comt_data(build_settings(data))
    if not path.is_file():
        raise FileNotFoundError(f"data.train: {path} is not a file")
    records = read_record_file(path, "data.train", skipped=skipped)
    if data.limit is not None:
        records = records[: data.limit]
    if not records:
        raise ValueError(f"data.train: {path} holds no records")
    return records


def load_extra_records(data_file: DataFile, where: str, *, skipped: dict[str, int] | None = None) -> list[ComtRecord]:
    """The records of one data.extra file (its first `limit`); a cut-off last line is counted in
    `skipped` and reported, as for data.train."""
    path = Path(data_file.path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}.path: {path} does not exist")
    records = read_record_file(path, where, skipped=skipped)
    return records if data_file.limit is None else records[: data_file.limit]


def cut_off_tail(path: str | os.PathLike[str]) -> int:
    """Bytes after the last newline of a JSONL file (a cut-off last line, which readers skip); 0 if none."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return 0
        tail = min(size, 1 << 20)
        f.seek(size - tail)
        data = f.read(tail)
    if data.endswith(b"\n"):
        return 0
    newline = data.rfind(b"\n")
    return tail - newline - 1 if newline >= 0 else tail


def prepare_tokenizer(cfg: SFTConfig, records: Sequence[ComtRecord], tokenizer_dir: Path) -> Any:
    """The checkpoint's tokenizer, the run's saved one (on resume), or a new one trained on the records."""
    tok = cfg.tokenizer
    if tok.kind == "pretrained":
        path = tok.path or cfg.model.path
        if not path:
            raise ValueError("tokenizer.path: expected a path (or model.path) for kind 'pretrained'")
        return load_tokenizer(path)
    if tokenizer_dir.exists():
        return load_tokenizer(tokenizer_dir)
    # The marker (plan_end "marker", loss_on "execution") must be spellable too.
    texts = [f"{r.question}\n{r.target}" for r in records] + [EXECUTION_MARKER]
    if cfg.data.system_prompt:
        texts.append(cfg.data.system_prompt)
    tokenizer = train_tokenizer(
        texts, kind=tok.kind, vocab_size=tok.vocab_size, number_max=tok.number_max, min_frequency=tok.min_frequency
    )
    # Saved through a temp directory and renamed: a crash never leaves a half tokenizer to resume from.
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-tokenizer-", dir=tokenizer_dir.parent))
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, tokenizer_dir)
    return tokenizer


def encode_records(
    tokenizer: Any,
    records: Sequence[ComtRecord],
    *,
    row_tokens: int,
    system_prompt: str | None = None,
    plan_end: str = "marker",
    loss_on: str = "response",
) -> tuple[list[Example], int]:
    """(examples that fit in a row, number dropped for being longer than `row_tokens`).

    loss_on "response": CoT records, and meta-thoughts with `plan_end="end_of_turn"`: the chat
    conversation, loss on the response and its end of turn. Meta-thoughts with `plan_end="marker"`:
    prompt, plan and the execution marker, concatenated part by part exactly as rollouts build
    `[prompt + plan + marker]`, loss on the plan and the marker: the model learns to write the plan
    and hand over to the execution, not to end its turn after planning.

    loss_on "execution": records whose target is `plan + EXECUTION_MARKER + execution`; prompt,
    plan, marker, execution and end of turn concatenated part by part, loss on the execution and
    the end of turn only (the plan in front of the model is context).
    """
    if plan_end not in ("marker", "end_of_turn"):
        raise ValueError(f"data.plan_end: expected 'marker' or 'end_of_turn', got {plan_end!r}")
    if loss_on == "execution":
        return _encode_executions(tokenizer, records, row_tokens=row_tokens, system_prompt=system_prompt)
    if loss_on != "response":
        raise ValueError(f"loss_on: expected 'response' or 'execution', got {loss_on!r}")
    chat = [r for r in records if not (plan_end == "marker" and r.kind == "meta_thought")]
    conversations = [sft_messages(r.question, r.target, system=system_prompt) for r in chat]
    encoded = iter(encode_chat_examples(tokenizer, conversations) if conversations else [])
    marker = marker_ids(tokenizer) if len(chat) < len(records) else []
    examples, dropped = [], 0
    for record in records:  # record order is kept: the epoch plan's shuffle is seeded over it
        if plan_end == "marker" and record.kind == "meta_thought":
            context = prompt_ids(tokenizer, record.question, system=system_prompt)
            trained = text_ids(tokenizer, record.target.strip()) + marker
            ids, flags = context + trained, [False] * len(context) + [True] * len(trained)
        else:
            ids, flags = next(encoded)
        if len(ids) <= row_tokens:
            examples.append(make_example(ids, flags))
        else:
            dropped += 1
    return examples, dropped


def _encode_executions(
    tokenizer: Any, records: Sequence[ComtRecord], *, row_tokens: int, system_prompt: str | None
) -> tuple[list[Example], int]:
    """encode_records with loss_on "execution" (see there)."""
    marker = marker_ids(tokenizer)
    closing = end_of_turn_ids(tokenizer)
    examples, dropped = [], 0
    for record in records:
        plan, found, execution = record.target.partition(EXECUTION_MARKER)
        if not found:
            raise ValueError(
                f"record {record.id!r}: loss_on 'execution' expects a target with the execution marker "
                f"{EXECUTION_MARKER!r}, got none"
            )
        context = (
            prompt_ids(tokenizer, record.question, system=system_prompt) + text_ids(tokenizer, plan.strip()) + marker
        )
        trained = text_ids(tokenizer, execution.strip()) + closing
        if len(context) + len(trained) <= row_tokens:
            examples.append(make_example(context + trained, [False] * len(context) + [True] * len(trained)))
        else:
            dropped += 1
    return examples, dropped


def main(config: str | None = None, overrides: Sequence[str] = ()) -> int:
    """`fastcomt sft --config FILE [key=value ...]`: train and print the run summary."""
    if config is None:
        raise ValueError("config: expected a YAML file (see configs/sft-*.yaml)")
    summary = run_sft(load_config(config, SFTConfig, list(overrides or ())))
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 speaks for the run
        return EXIT_INTERRUPTED if summary["stopped_by"] else 0
    print(json.dumps(summary, indent=2))
    if summary["stopped_by"]:
        print(resume_hint("sft", config, list(overrides or ()), summary), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    print(f"final model: {summary['final_model']} (weights, tokenizer, train_config.json)", file=sys.stderr, flush=True)
    return 0
