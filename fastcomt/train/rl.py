"""The CCRL recipe (Confidence-Calibrated RL): one training loop, readable top to bottom.

    run_rl(load_config("configs/rl-synthetic-ccrl.yaml", RLConfig))

Per step:
1. sample `problems_per_step` problems (a pure function of seed and step, so a resumed run draws
   the same ones);
2. rollout: per problem M plans, per plan G executions continuing the shared [prompt + plan +
   marker] prefix (`formats.generate_comt`; `format: cot` samples G executions of the prompt);
3. scoring: grade answers and numeric steps on tokens, then the reward kernel: step confidence from
   the rollout log-probs, R = 1[answer] + lam * mean_k r_k, group advantages (lam = 0: plain GRPO on
   the outcome, the paper's baseline, same code path);
4. update: old log-probs recomputed with `linear_logprobs` (or the engine's reused), optional k3 KL
   to the starting policy, `linear_policy_loss` over micro-batches sized by a padded-token budget
   (gradients accumulated, the loss normalised over the whole batch), clip, AdamW step;
5. push the new weights to the engine (its prefix cache is flushed, its version bumped);
6. log one JSON line (metrics.jsonl) and the progress bar; checkpoint atomically every
   `save_every` steps and at the end (weights, optimizer, scheduler, RNG, step): a rerun resumes;
   SIGINT/SIGTERM end the run after the current step with a checkpoint (train/interrupt.py).
At the end the final model (weights, tokenizer, this config) goes to `<output_dir>/final/`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fastcomt.atomic_io import write_json_atomic
from fastcomt.config import config_from_dict, config_to_dict, load_config
from fastcomt.device import resolve_device
from fastcomt.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    clip_grad_norm,
    init_distributed,
    shard_model,
    shutdown_distributed,
    unwrap_grad_norm,
)
from fastcomt.distributed.sharded_state import full_model_copy
from fastcomt.distributed.weight_sync import gathered_buckets, write_buckets
from fastcomt.formats import generate_comt, generate_cot
from fastcomt.metrics.calibration import expected_calibration_error, overconfident_error_rate
from fastcomt.rollout.engine import RolloutEngine
from fastcomt.rollout.types import SamplingParams
from fastcomt.tasks import Problem, load_benchmark, synthetic_problems
from fastcomt.tokenizer import load_tokenizer

from .checkpoint import save_checkpoint, truncate_metrics
from .final_model import write_final_model
from .interrupt import EXIT_INTERRUPTED, StopOnSignal, resume_hint
from .loss_head import describe_loss_head, resolve_loss_head
from .models import build_config, build_device, build_model, hidden_states, lm_head_weight
from .resume import resume_newest_loadable
from .rl_batch import CountingEngine, PolicyBatch, ScoredBatch, build_policy_batch, micro_batches, score_rollouts
from .rl_config import PolicyLossConfig, RLConfig, check_rl_config, max_completion_tokens
from .schedule import cosine_scheduler
from .torch_head import chunk_rows_for

__all__ = ["run_rl", "rl_step_problems", "load_problem_pool", "policy_update", "push_weights", "main"]


def run_rl(
    config: RLConfig | Mapping[str, Any],
    *,
    stop_after_steps: int | None = None,
    engine: RolloutEngine | None = None,
) -> dict[str, Any]:
    """Train (or resume) to `config.steps`; returns the run summary (also summary.json).

    stop_after_steps: checkpoint and return once this many steps are done in total, as a
    preemption would (tests use it for exact resume). engine: a rollout engine to use instead of
    building one (it must hold the same weights as `model.path`; it is not closed here).

    Under torchrun (WORLD_SIZE > 1) the policy (and the KL reference) are sharded with FSDP2; each
    rank draws the same step problems and rolls out, scores and trains on its share (problems rank,
    rank + world, ...; whole problems, so group advantages need nothing from other ranks), on its own
    engine holding full weights (pushed bucket by bucket after each update; an engine given by the
    caller is taken as shared by all ranks: rank 0 pushes). The loss is normalised by the global
    token (or sequence) count, so it is the one-process loss; metrics are over all ranks' rollouts.
    """
    cfg = config if isinstance(config, RLConfig) else config_from_dict(RLConfig, config)
    check_rl_config(cfg)
    ctx, device = init_distributed(resolve_device(cfg.device))
    summary = _run_rl(cfg, ctx, device, stop_after_steps=stop_after_steps, engine=engine)
    # only after a run that finished on this rank: a rank that failed must not wait in a barrier for
    # ranks that are waiting for it elsewhere (it exits, and torchrun stops the others)
    shutdown_distributed(ctx)
    return summary


def _run_rl(
    cfg: RLConfig, ctx: DistContext, device: torch.device, *, stop_after_steps: int | None, engine: RolloutEngine | None
) -> dict[str, Any]:
    if ctx.world_size > cfg.rollout.problems_per_step:
        raise ValueError(
            f"rollout.problems_per_step: expected at least one problem per rank ({ctx.world_size} ranks), "
            f"got {cfg.rollout.problems_per_step}"
        )
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    autocast_dtype = torch.bfloat16 if device.type == "cuda" and cfg.precision == "bf16" else None
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # 1. Tokenizer, policy, optional frozen reference, optimizer and schedule.
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model.path)
    model = build_model(
        build_config(cfg.model, ctx, device),
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        device=build_device(ctx, device),
    )
    model.train()
    reference = None
    if cfg.loss.beta > 0:
        # The KL anchor is the starting checkpoint, never the resumed weights.
        reference = copy.deepcopy(model).eval().requires_grad_(False)
        reference = shard_model(reference, ctx, mixed_precision=autocast_dtype is not None)
    # Under torchrun each rank's own engine is built from the full weights before they are sharded.
    own_engine = engine is None
    shared_engine = not own_engine or cfg.rollout.engine == "sglang_servers"  # one fleet for every rank
    if engine is None:
        engine = _build_engine(cfg, model, device, version=0)
    try:  # an engine built here is closed if the set-up fails (the loop's own try closes it later)
        model = shard_model(model, ctx, mixed_precision=autocast_dtype is not None)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
            fused=device.type == "cuda",
        )
        total_updates = cfg.steps * cfg.loss.updates_per_batch
        scheduler = cosine_scheduler(
            optimizer,
            warmup_steps=cfg.optim.warmup_steps,
            total_steps=total_updates,
            min_lr_ratio=cfg.optim.min_lr_ratio,
        )

        # 2. Resume from the newest checkpoint (weights, optimizer, scheduler, RNG, counters).
        ckpt_root = out_dir / "checkpoints"
        state: dict[str, Any] = {"step": 0, "generated_tokens": 0, "trained_tokens": 0, "train_seconds": 0.0}
        latest = None
        if cfg.resume:  # the newest checkpoint that loads (a damaged newer one is named and skipped)
            latest, loaded = resume_newest_loadable(
                ckpt_root, model=model, optimizer=optimizer, scheduler=scheduler, map_location=device, rank=ctx.rank
            )
            state.update({k: loaded[k] for k in state if k in loaded})
        metrics_path = out_dir / "metrics.jsonl"
        if ctx.is_main:
            truncate_metrics(metrics_path, after_step=state["step"])

        # 3. The rollout engine holds its own copy of the weights, at version = steps done.
        sync_dir = None
        if cfg.rollout.weight_sync == "disk":
            # absolute: the servers resolve the path on their side
            sync_dir = Path(cfg.rollout.weight_sync_dir or out_dir / "weight_sync").resolve()
        sync_dtype = autocast_dtype  # bf16 on a bf16 GPU run: half the bytes for the servers to read
        if state["step"]:
            push_weights(
                engine, model, state["step"], ctx=ctx, shared=shared_engine, via_disk=sync_dir, dtype=sync_dtype
            )
        counting = CountingEngine(engine)
        pool = load_problem_pool(cfg)
        sampling = SamplingParams(
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            max_new_tokens=cfg.rollout.max_new_tokens,
        )
        if cfg.rollout.plan_temperature is not None or cfg.rollout.plans_per_problem > 1:
            plan_t = cfg.rollout.temperature if cfg.rollout.plan_temperature is None else cfg.rollout.plan_temperature
            plan_sampling = SamplingParams(
                temperature=plan_t,
                top_p=cfg.rollout.top_p,
                top_k=cfg.rollout.top_k,
                max_new_tokens=cfg.rollout.plan_max_new_tokens,
            )
        else:
            plan_sampling = SamplingParams(temperature=0.0, max_new_tokens=cfg.rollout.plan_max_new_tokens)

        def save(interrupted: bool) -> Path:
            trainer_state = {k: state[k] for k in ("generated_tokens", "trained_tokens", "train_seconds")}
            trainer_state.update(total_steps=cfg.steps, interrupted=interrupted, config=config_to_dict(cfg))
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
    except BaseException:
        if own_engine:
            engine.close()
        raise

    # 4. The loop.
    checkpoint = latest
    saved_at = state["step"] if latest is not None else -1
    interrupted = False
    last: dict[str, Any] = {}
    loss_head = resolve_loss_head(cfg.loss.lm_head, device)
    stop = StopOnSignal()
    bar = tqdm(
        total=cfg.steps,
        initial=state["step"],
        disable=not cfg.progress or not ctx.is_main,
        desc=f"rl ({cfg.format}) [{describe_loss_head(cfg.loss.lm_head, loss_head)}]",
        unit="step",
    )
    try:
        with stop, open(metrics_path if ctx.is_main else os.devnull, "a", encoding="utf-8") as metrics_file:
            while state["step"] < cfg.steps and not interrupted:
                step = state["step"]
                started = time.perf_counter()
                problems = rl_step_problems(pool, cfg.rollout.problems_per_step, seed=cfg.seed, step=step)
                problems = problems[ctx.rank :: ctx.world_size]  # this rank's share (all of them on one process)

                # rollout: M plans x G executions per problem, prefixes shared
                counting.reset()
                rollout_seed = _step_seed(cfg.seed, step)
                if cfg.format == "comt":
                    rollouts = generate_comt(
                        counting,
                        tokenizer,
                        problems,
                        sampling,
                        cfg.rollout.plans_per_problem,
                        cfg.rollout.executions_per_plan,
                        plan_sampling=plan_sampling,
                        seed=rollout_seed,
                        system=cfg.data.system_prompt,
                    )
                else:
                    rollouts = generate_cot(
                        counting,
                        tokenizer,
                        problems,
                        sampling,
                        cfg.rollout.executions_per_plan,
                        seed=rollout_seed,
                        system=cfg.data.system_prompt,
                    )
                totals = counting.reset()
                t_rollout = time.perf_counter()

                # scoring: grades, calibrated rewards and advantages (reward kernel)
                scored = score_rollouts(rollouts, tokenizer, cfg.reward, device=device)
                batch = build_policy_batch(scored, pad_id=_pad_id(tokenizer), train_plans=cfg.loss.train_plans)
                t_scoring = time.perf_counter()

                # update
                update = policy_update(
                    model,
                    batch,
                    cfg.loss,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    temperature=cfg.rollout.temperature,
                    grad_clip=cfg.optim.grad_clip,
                    reference=reference,
                    device=device,
                    autocast_dtype=autocast_dtype,
                    max_completion_tokens=max_completion_tokens(cfg),
                    ctx=ctx,
                )
                t_update = time.perf_counter()

                # weight sync: the engine samples the next step with the new weights
                push_weights(
                    counting, model, step + 1, ctx=ctx, shared=shared_engine, via_disk=sync_dir, dtype=sync_dtype
                )
                t_sync = time.perf_counter()
                if ctx.enabled:  # metrics over every rank's rollouts
                    scored, totals = _merge_ranks(ctx, scored, totals)

                state["step"] += 1
                seconds = t_sync - started
                state["generated_tokens"] += totals["generated_tokens"]
                state["trained_tokens"] += update["trained_tokens"]
                state["train_seconds"] += seconds
                last = _step_metrics(
                    state["step"],
                    scored,
                    update,
                    totals,
                    cfg,
                    times=(
                        t_rollout - started,
                        t_scoring - t_rollout,
                        t_update - t_scoring,
                        t_sync - t_update,
                        seconds,
                    ),
                    weight_version=counting.weight_version,
                )
                metrics_file.write(json.dumps(last) + "\n")
                metrics_file.flush()
                bar.set_postfix(
                    reward=f"{last['reward']:.3f}",
                    acc=f"{last['accuracy']:.2f}",
                    ece=_fmt(last["ece"]),
                    tok_s=f"{last['tokens_per_s']:.0f}",
                )
                bar.update(1)

                interrupted = stop_after_steps is not None and stop_after_steps <= state["step"] < cfg.steps
                interrupted = interrupted or (stop.requested is not None and state["step"] < cfg.steps)
                interrupted = bool(all_reduce_max(ctx, int(interrupted)))  # a signal to any rank stops them all
                if interrupted or (cfg.save_every and state["step"] % cfg.save_every == 0):
                    checkpoint = save(interrupted)
                    saved_at = state["step"]
        bar.close()
        if saved_at != state["step"]:
            checkpoint = save(False)
        final = None
        if not interrupted:  # the stable place eval reads (train/final_model.py)
            plain = full_model_copy(model, ctx) if ctx.enabled else model  # full weights gathered on rank 0
            if ctx.is_main:
                final = write_final_model(out_dir, model=plain, tokenizer=tokenizer, config=config_to_dict(cfg))
            barrier(ctx)
    finally:
        if own_engine:
            engine.close()

    summary = {
        "output_dir": str(out_dir),
        "checkpoint": str(checkpoint) if checkpoint else None,
        # a loadable model folder: the checkpoint's (one process), else the final one (a sharded checkpoint has none)
        "model_dir": str(Path(checkpoint) / "model")
        if checkpoint and (Path(checkpoint) / "model").is_dir()
        else (str(final) if final else None),
        "final_model": str(final) if final else None,
        "interrupted": interrupted,
        "stopped_by": stop.requested if interrupted else None,  # SIGINT / SIGTERM, or None
        "loss_head": loss_head,
        "steps": state["step"],
        "total_steps": cfg.steps,
        "format": cfg.format,
        "lam": cfg.reward.lam,
        "generated_tokens": state["generated_tokens"],
        "trained_tokens": state["trained_tokens"],
        "train_seconds": round(state["train_seconds"], 3),
        "last_step": last,
        "device": str(device),
        "world_size": ctx.world_size,
    }
    if ctx.is_main:
        write_json_atomic(out_dir / "summary.json", summary)
    return summary


def _merge_ranks(ctx: DistContext, scored: ScoredBatch, totals: Mapping[str, int]) -> tuple[Any, dict[str, int]]:
    """The step's graded rollouts and rollout counters over every rank (for the logged metrics only)."""
    from types import SimpleNamespace

    mine = (
        scored.rewards.rewards.detach().float().cpu(),
        scored.executions,
        scored.step_confidence,
        scored.step_correct,
    )
    parts = all_gather_objects(ctx, mine)
    merged = SimpleNamespace(
        rewards=SimpleNamespace(rewards=torch.cat([p[0] for p in parts])),
        executions=[e for p in parts for e in p[1]],
        step_confidence=[c for p in parts for c in p[2]],
        step_correct=[c for p in parts for c in p[3]],
    )
    keys = sorted(totals)
    return merged, dict(zip(keys, (int(v) for v in all_reduce_sum(ctx, [totals[k] for k in keys]))))


# --- the pieces of a step ------------------------------------------------------------------------


def load_problem_pool(cfg: RLConfig) -> list[Problem]:
    """The prompts RL samples from, in a fixed order."""
    data = cfg.data
    if data.source == "synthetic":
        pool = synthetic_problems(data.num_problems, seed=data.seed, families=data.families)
    else:
        pool = list(load_benchmark(data.source, split=data.split))
    if data.limit is not None:
        pool = pool[: data.limit]
    if not pool:
        raise ValueError(f"data: the problem pool of {data.source!r} is empty")
    return pool


def rl_step_problems(pool: Sequence[Problem], count: int, *, seed: int, step: int) -> list[Problem]:
    """The problems of one step: a seeded draw without replacement (with it when the pool is small)."""
    rng = random.Random(f"{seed}:rl-step:{step}")
    if count <= len(pool):
        return [pool[i] for i in rng.sample(range(len(pool)), count)]
    return [pool[rng.randrange(len(pool))] for _ in range(count)]


def _step_seed(seed: int, step: int) -> int:
    # formats.sample_seed hashes (seed, problem id, stage, index): a per-step seed makes a problem
    # drawn again at a later step get fresh samples.
    return (seed * 1_000_003 + step) % (1 << 62)


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def _build_engine(cfg: RLConfig, model: torch.nn.Module, device: torch.device, *, version: int) -> RolloutEngine:
    if cfg.rollout.engine == "sglang_servers":  # started from model.path: they hold version 0
        from fastcomt.rollout.sglang_fleet import SGLangFleetEngine

        return SGLangFleetEngine(list(cfg.rollout.server_urls or ()), weight_version=0)
    if cfg.rollout.engine in ("sglang", "vllm", "vllm_http"):
        # These load model.path themselves (version 0); a resumed run pushes its weights.
        from fastcomt.rollout import SGLangEngine, VLLMEngine, VLLMHTTPEngine

        if cfg.rollout.engine == "sglang":
            engine: RolloutEngine = SGLangEngine(cfg.model.path, weight_version=0)
        elif cfg.rollout.engine == "vllm":
            engine = VLLMEngine(cfg.model.path, weight_version=0, **cfg.rollout.vllm_args)
        else:
            engine = VLLMHTTPEngine(cfg.rollout.server_urls, weight_version=0)
        if version:
            push_weights(engine, model, version)
        return engine
    from fastcomt.rollout import TransformersEngine

    engine_model = copy.deepcopy(model).eval().requires_grad_(False).to(device)  # under torchrun: built on the CPU
    if device.type == "cuda" and cfg.precision == "bf16":
        engine_model = engine_model.to(torch.bfloat16)
    return TransformersEngine(engine_model, weight_version=version, max_batch_samples=cfg.rollout.max_batch_samples)


@torch.no_grad()
def push_weights(
    engine: RolloutEngine,
    model: torch.nn.Module,
    version: int,
    *,
    ctx: DistContext | None = None,
    shared: bool = False,
    via_disk: Path | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Install the policy's weights in the engine as `version`, then drop its cached prefixes.

    Sharded (torchrun): every rank gathers the full weights bucket by bucket (a collective; never
    the whole model at once) and installs each bucket in its own engine, or, when the engine is
    `shared` by all ranks (servers), rank 0 alone installs them; a barrier keeps any rank from
    sampling before the update is complete. An engine with `update_weights_in_buckets` (the SGLang
    fleet) gets the buckets streamed into one weight-update session per server.

    via_disk: write the buckets (cast to `dtype`) into `via_disk/v<version>` and have the engine load
    that folder (SGLang servers: `/update_weights_from_disk`); the previous version's folder is then
    removed. Every rank joins the gathers; the writer is the installing rank.
    """
    installs = ctx is None or not ctx.enabled or ctx.is_main or not shared
    if via_disk is not None:
        root = Path(via_disk)
        if ctx is not None and ctx.enabled and not shared:  # every rank writes for its own engine
            root = root / f"rank{ctx.rank:05d}"
        if installs:
            folder = write_buckets(
                gathered_buckets(model), root / f"v{version:08d}", config=getattr(model, "config", None), dtype=dtype
            )
            engine.update_weights(str(folder), version)
            engine.flush_cache()
            for old in root.glob("v*"):
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
        else:
            for _ in gathered_buckets(model):  # the collective gathers the writer's loop makes
                pass
        if ctx is not None:
            barrier(ctx)
        return
    inner = getattr(engine, "inner", engine)  # CountingEngine wraps the engine
    streamed = getattr(inner, "update_weights_in_buckets", None)  # a server fleet takes buckets as they come
    if ctx is None or not ctx.enabled:
        if streamed is not None:
            streamed(gathered_buckets(model), version)
            return
        engine.update_weights([(name, p.detach()) for name, p in model.named_parameters()], version)
        engine.flush_cache()
        return
    if installs and streamed is not None:
        streamed(gathered_buckets(model), version)  # the other ranks' loop below joins the same gathers
    else:
        for bucket in gathered_buckets(model):
            if installs:
                engine.update_weights(bucket, version)
        if installs:
            engine.flush_cache()
    barrier(ctx)


def _hidden(model: torch.nn.Module, rows: PolicyBatch, autocast_dtype: torch.dtype | None) -> torch.Tensor:
    """[b, L-1, H] hidden states whose position t predicts targets[:, t] (the LM head is not run)."""
    device_type = rows.input_ids.device.type
    ctx = torch.autocast(device_type=device_type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    with ctx:
        hidden = hidden_states(model, input_ids=rows.input_ids, attention_mask=rows.attention_mask, use_cache=False)
    hidden = hidden[:, :-1]
    return hidden.to(autocast_dtype) if autocast_dtype else hidden


def _lm_head_ops(loss: PolicyLossConfig, device: Any = "cpu") -> tuple[Any, Any]:
    # chunked and torch share the plain-torch reference; chunked caps the micro-batches (_micro_batch_budget)
    if resolve_loss_head(loss.lm_head, device) == "fused":
        from fastcomt.kernels import linear_logprobs, linear_policy_loss
    else:
        from fastcomt.kernels import reference_linear_logprobs as linear_logprobs
        from fastcomt.kernels import reference_linear_policy_loss as linear_policy_loss
    return linear_logprobs, linear_policy_loss


def _micro_batch_budget(loss: PolicyLossConfig, vocab_size: int, device: Any) -> int:
    """Padded tokens per micro-batch: loss.micro_batch_tokens, capped for the chunked head so that
    one micro-batch's [tokens, vocab] logits stay within torch_head.LOGITS_BUDGET_BYTES."""
    if resolve_loss_head(loss.lm_head, device) == "chunked":
        return min(loss.micro_batch_tokens, chunk_rows_for(vocab_size))
    return loss.micro_batch_tokens


@torch.no_grad()
def _score_tokens(
    model: torch.nn.Module,
    batch: PolicyBatch,
    groups: list[list[int]],
    temperature: float,
    logprobs_fn: Any,
    autocast_dtype: torch.dtype | None,
    padding: int = 0,
) -> torch.Tensor:
    """Log-probs of the trained tokens under `model` ([B, L-1], 0 elsewhere), no grad.

    padding: extra forward passes whose results are dropped (FSDP: every rank makes as many passes)."""
    out = torch.zeros_like(batch.rollout_logprobs)
    for index in groups:
        rows = batch.rows(index)
        hidden = _hidden(model, rows, autocast_dtype)
        weight = lm_head_weight(model)
        weight = weight.to(hidden.dtype) if autocast_dtype else weight
        logp, _, _ = logprobs_fn(hidden, weight, rows.targets, temperature=temperature, mask=rows.loss_mask)
        out[index, : logp.shape[1]] = logp.float().cpu()
    for _ in range(padding):
        _hidden(model, batch.rows(groups[0]), autocast_dtype)
    return out


def policy_update(
    model: torch.nn.Module,
    batch: PolicyBatch,
    loss_cfg: PolicyLossConfig,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    temperature: float,
    grad_clip: float,
    reference: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    max_completion_tokens: int | None = None,
    ctx: DistContext | None = None,
) -> dict[str, float]:
    """`updates_per_batch` optimizer steps on one rollout batch; returns averaged loss metrics.

    The batch loss is the configured aggregation over *all* rows: each micro-batch's loss is scaled
    by its share (tokens for bnpo/dapo, sequences for grpo/dr_grpo), so the gradient does not depend
    on how rows were split into micro-batches. dr_grpo divides the summed token loss by rows x
    `max_completion_tokens`, a constant of the run (the rollout's generation budget, as in TRL and
    the Dr. GRPO paper), never by a batch's padded width, which would change with prompt length.

    ctx (torchrun): `batch` is this rank's share; the token and row counts that normalise the loss
    are summed over ranks first, every rank runs as many micro-batches (zero-weight repeats pad the
    shorter ones: each FSDP pass is a collective), and the metrics are summed over ranks.
    """
    distributed = ctx is not None and ctx.enabled
    if loss_cfg.loss_type == "dr_grpo" and max_completion_tokens is None:
        raise ValueError(
            "max_completion_tokens: expected the rollout's generation budget for loss_type dr_grpo, got None"
        )
    logprobs_fn, loss_fn = _lm_head_ops(loss_cfg, device)
    batch = PolicyBatch(
        *(
            t.to(device) if isinstance(t, torch.Tensor) else t
            for t in (
                batch.input_ids,
                batch.attention_mask,
                batch.targets,
                batch.loss_mask,
                batch.advantages,
                batch.rollout_logprobs,
                batch.lengths,
            )
        )
    )
    groups = micro_batches(batch.lengths, _micro_batch_budget(loss_cfg, lm_head_weight(model).shape[0], device))
    padding = all_reduce_max(ctx, len(groups)) - len(groups) if distributed else 0
    was_training = model.training
    model.eval()  # no dropout while scoring; the tiny models have none, real checkpoints might
    if loss_cfg.old_logprobs == "recompute":
        old = _score_tokens(model, batch, groups, temperature, logprobs_fn, autocast_dtype, padding).to(device)
        behaviour = batch.rollout_logprobs
    else:
        old, behaviour = batch.rollout_logprobs, None
    ref = None
    if loss_cfg.beta > 0:
        if reference is None:
            raise ValueError("reference: expected the frozen starting policy when loss.beta > 0")
        ref = _score_tokens(reference, batch, groups, temperature, logprobs_fn, autocast_dtype, padding).to(device)
    model.train(was_training)

    total_tokens = int(batch.loss_mask.sum())
    total_rows = len(batch.lengths)
    if distributed:
        total_tokens, total_rows = (int(v) for v in all_reduce_sum(ctx, [total_tokens, total_rows]))
    passes = [(index, True) for index in groups] + [(groups[0], False)] * padding
    sums: dict[str, float] = {}
    grad_norms: list[float] = []
    lrs: list[float] = []
    for _ in range(loss_cfg.updates_per_batch):
        optimizer.zero_grad(set_to_none=True)
        for index, counts in passes:
            rows = batch.rows(index)
            n_tok = int(rows.loss_mask.sum())
            if n_tok == 0:
                if not distributed:
                    continue
                counts = False  # still a pass: the other ranks wait on its collectives
            width = rows.targets.shape[1]
            hidden = _hidden(model, rows, autocast_dtype)
            weight = lm_head_weight(model)
            weight = weight.to(hidden.dtype) if autocast_dtype else weight
            loss, metrics = loss_fn(
                hidden,
                weight,
                rows.targets,
                rows.loss_mask,
                rows.advantages,
                old[index, :width],
                ref_logprobs=None if ref is None else ref[index, :width],
                behaviour_logprobs=None if behaviour is None else behaviour[index, :width],
                loss_type=loss_cfg.loss_type,
                eps_low=loss_cfg.eps_low,
                eps_high=loss_cfg.eps_high,
                beta=loss_cfg.beta,
                tis_cap=loss_cfg.tis_cap if behaviour is not None else None,
                entropy_coef=loss_cfg.entropy_coef,
                temperature=temperature,
                max_tokens=max_completion_tokens if loss_cfg.loss_type == "dr_grpo" else None,
                check_finite=True,  # NaN/inf inputs fail loudly; one sync, and the loss is read back below anyway
            )
            share = n_tok / max(total_tokens, 1) if loss_cfg.loss_type in ("bnpo", "dapo") else len(index) / total_rows
            if not counts:
                (loss * 0.0).backward()
                continue
            (loss * share).backward()
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * share
            for key, value in metrics.items():  # token means, re-weighted to a batch token mean
                sums[key] = sums.get(key, 0.0) + float(value) * n_tok
        if distributed:
            grad_norms.append(unwrap_grad_norm(clip_grad_norm(model, grad_clip)))
        else:
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)))
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)

    epochs = loss_cfg.updates_per_batch
    row_tokens, micro = sum(batch.lengths), len(groups)
    if distributed:  # every rank's sums (a rank whose micro-batches were all empty has none)
        merged: dict[str, float] = {}
        for part in all_gather_objects(ctx, sums):
            for key, value in part.items():
                merged[key] = merged.get(key, 0.0) + value
        sums = merged
        row_tokens, micro = (int(v) for v in all_reduce_sum(ctx, [row_tokens, micro]))
    out = {key: value / epochs / (1 if key == "loss" else max(total_tokens, 1)) for key, value in sums.items()}
    out.update(
        grad_norm=sum(grad_norms) / epochs,
        lr=lrs[0],
        trained_tokens=total_tokens,
        row_tokens=row_tokens,
        micro_batches=micro,
    )
    return out


def _step_metrics(
    step: int,
    scored: ScoredBatch,
    update: Mapping[str, float],
    totals: Mapping[str, int],
    cfg: RLConfig,
    *,
    times: tuple[float, ...],
    weight_version: int,
) -> dict[str, Any]:
    rollout_s, scoring_s, update_s, sync_s, seconds = times
    rewards = scored.rewards.rewards.detach().float().cpu()
    execs = scored.executions
    conf, correct = scored.step_confidence, scored.step_correct
    ece = expected_calibration_error(conf, correct, cfg.n_bins) if conf else None
    overconf = overconfident_error_rate(conf, correct, cfg.tau) if conf else None
    processed = totals["generated_tokens"] + update["row_tokens"]
    return {
        "step": step,
        "reward": float(rewards.mean()),
        "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "accuracy": sum(e.graded.answer_correct for e in execs) / len(execs),
        "finished": sum(e.finish_reason == "stop" for e in execs) / len(execs),
        "steps_per_execution": sum(len(e.graded.steps) for e in execs) / len(execs),
        "step_accuracy": sum(correct) / len(correct) if correct else None,
        "step_confidence": sum(conf) / len(conf) if conf else None,
        "ece": ece,
        "overconfident_error_rate": overconf,
        "loss": update.get("loss", 0.0),
        "clip_frac_low": update.get("clip_frac_low", 0.0),
        "clip_frac_high": update.get("clip_frac_high", 0.0),
        "kl": update.get("kl", 0.0),
        "entropy": update.get("entropy", 0.0),
        "ratio": update.get("ratio", 1.0),
        "grad_norm": update["grad_norm"],
        "lr": update["lr"],
        "executions": len(execs),
        "generated_tokens": totals["generated_tokens"],
        "trained_tokens": update["trained_tokens"],
        "micro_batches": update["micro_batches"],
        "prefix_cache_hit_rate": totals["cached_tokens"] / totals["prefix_tokens"] if totals["prefix_tokens"] else 0.0,
        "tokens_per_s": processed / seconds if seconds > 0 else 0.0,
        "rollout_tokens_per_s": totals["generated_tokens"] / rollout_s if rollout_s > 0 else 0.0,
        "time_rollout": rollout_s,
        "time_scoring": scoring_s,
        "time_update": update_s,
        "time_sync": sync_s,
        "seconds": seconds,
        "weight_version": weight_version,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def main(config: str | None = None, overrides: Sequence[str] = ()) -> int:
    """`fastcomt rl --config FILE [key=value ...]`: train and print the run summary."""
    if config is None:
        raise ValueError("config: expected a YAML file (see configs/rl-*.yaml)")
    summary = run_rl(load_config(config, RLConfig, list(overrides or ())))
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 speaks for the run
        return EXIT_INTERRUPTED if summary["stopped_by"] else 0
    print(json.dumps(summary, indent=2))
    if summary["stopped_by"]:
        print(resume_hint("rl", config, list(overrides or ()), summary), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    print(f"final model: {summary['final_model']} (weights, tokenizer, train_config.json)", file=sys.stderr, flush=True)
    return 0
