"""The CCRL recipe's config: plain dataclasses, loaded from YAML by `train.config.load_config`.

Every key is documented in configs/README.md. Model and optimizer settings reuse the SFT recipe's
`ModelConfig` and `OptimConfig`; the optimizer's schedule length is `steps` (RL has no epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .config import ModelConfig, OptimConfig

__all__ = ["RLDataConfig", "RolloutConfig", "RewardConfig", "PolicyLossConfig", "RLConfig", "check_rl_config"]


@dataclass
class RLDataConfig:
    """The prompt pool. `synthetic`: `num_problems` generated problems (seed, families); otherwise a
    benchmark name for `tasks.load_benchmark` (its `split`), cut to `limit`."""

    source: str = "synthetic"
    split: str = "train"
    num_problems: int = 2000
    seed: int = 0
    families: list[str] | None = None
    limit: int | None = None
    system_prompt: str | None = None


@dataclass
class RolloutConfig:
    """Per step: `problems_per_step` problems, M = `plans_per_problem` plans each, G =
    `executions_per_plan` executions per plan (sharing the [prompt + plan + marker] prefix)."""

    engine: Literal["transformers", "sglang"] = "transformers"
    problems_per_step: int = 8
    plans_per_problem: int = 1
    executions_per_plan: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    plan_temperature: float | None = None  # None: greedy plans when M == 1, else `temperature`
    max_new_tokens: int = 256  # execution budget
    plan_max_new_tokens: int = 256
    max_batch_samples: int = 256  # transformers engine: samples decoded together


@dataclass
class RewardConfig:
    """R = 1[answer correct] + lam * mean_k r_k (DESIGN.md, "CCRL reward"); lam = 0 is plain GRPO."""

    lam: float = 0.5
    confidence: Literal["geomean", "min", "first"] = "geomean"
    step_reward: Literal["brier", "signed"] = "brier"
    advantage: Literal["grpo", "dr_grpo"] = "grpo"
    eps: float = 1e-6


@dataclass
class PolicyLossConfig:
    """The clipped surrogate (fastcomt.kernels.linear_policy_loss) and how its inputs are made.

    old_logprobs: "recompute" (the trainer's own log-probs before the update, with the engine's as
    behaviour log-probs and truncated importance weights capped at `tis_cap`) or "rollout" (the
    engine's log-probs are the old ones: one GEMM pass less, exact when engine and trainer agree).
    lm_head: "fused" (Triton kernels; the CPU runs them in the interpreter) or "torch" (the plain
    full-logits reference of the same functions).
    """

    loss_type: Literal["grpo", "bnpo", "dapo", "dr_grpo"] = "dapo"
    eps_low: float = 0.2
    eps_high: float = 0.28
    beta: float = 0.0  # k3 KL to the reference (the starting policy); > 0 loads a frozen copy
    tis_cap: float | None = 2.0
    entropy_coef: float = 0.0
    old_logprobs: Literal["recompute", "rollout"] = "recompute"
    train_plans: bool = False  # also train the plan tokens, with the plan-level advantages
    micro_batch_tokens: int = 8192  # padded tokens per forward/backward (gradient accumulation)
    updates_per_batch: int = 1  # optimizer steps over each rollout batch (PPO epochs)
    lm_head: Literal["fused", "torch"] = "fused"


@dataclass
class RLConfig:
    """One CCRL (or GRPO, lam = 0) run from a checkpoint (`model.path`, normally the SFT output)."""

    output_dir: str
    model: ModelConfig
    tokenizer: str | None = None  # default: model.path
    format: Literal["comt", "cot"] = "comt"
    steps: int = 100
    data: RLDataConfig = field(default_factory=RLDataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, warmup_steps=0, min_lr_ratio=1.0))
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on GPU; CPU always runs fp32
    save_every: int = 0  # steps between checkpoints; 0: only at the end
    keep_last: int = 2
    resume: bool = True
    progress: bool = True
    n_bins: int = 10  # ECE bins of the logged step calibration
    tau: float = 0.9  # confidence at or above which a wrong step counts as an overconfident error


def _positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")


def check_rl_config(cfg: RLConfig) -> None:
    """Value checks the type-checked loader cannot express (ranges, required paths)."""
    if not cfg.model.path:
        raise ValueError("model.path: expected the checkpoint to start from (e.g. the SFT run's output)")
    _positive(cfg.steps, "steps")
    for name in ("problems_per_step", "plans_per_problem", "executions_per_plan", "max_new_tokens",
                 "plan_max_new_tokens", "max_batch_samples"):  # fmt: skip
        _positive(getattr(cfg.rollout, name), f"rollout.{name}")
    _positive(cfg.loss.micro_batch_tokens, "loss.micro_batch_tokens")
    _positive(cfg.loss.updates_per_batch, "loss.updates_per_batch")
    _positive(cfg.data.num_problems, "data.num_problems")
    _positive(cfg.n_bins, "n_bins")
    if cfg.format == "cot" and (cfg.rollout.plans_per_problem != 1 or cfg.loss.train_plans):
        raise ValueError("format 'cot' has no plans: expected rollout.plans_per_problem=1 and loss.train_plans=false")
    if cfg.reward.lam < 0:
        raise ValueError(f"reward.lam: expected >= 0, got {cfg.reward.lam}")
    if cfg.loss.beta < 0:
        raise ValueError(f"loss.beta: expected >= 0, got {cfg.loss.beta}")
    if cfg.loss.tis_cap is not None and cfg.loss.tis_cap <= 0:
        raise ValueError(f"loss.tis_cap: expected > 0 or null, got {cfg.loss.tis_cap}")
    if cfg.rollout.temperature <= 0:
        raise ValueError(f"rollout.temperature: expected > 0 (RL samples), got {cfg.rollout.temperature}")
    if not 0.0 <= cfg.tau <= 1.0:
        raise ValueError(f"tau: expected a value in [0, 1], got {cfg.tau}")
