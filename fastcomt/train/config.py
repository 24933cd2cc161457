"""The SFT recipe's config dataclasses (the RL recipe reuses ModelConfig, TokenizerConfig and
OptimConfig); loaded from YAML by `fastcomt.config.load_config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ModelConfig", "TokenizerConfig", "DataFile", "DataConfig", "OptimConfig", "SFTConfig", "check_optim_counts"]


# --- the SFT recipe's config (the RL recipe reuses ModelConfig, TokenizerConfig and OptimConfig) ----


@dataclass
class ModelConfig:
    """`path` set: load that checkpoint; otherwise build a fresh `family` model of the given shape."""

    family: Literal["qwen2", "llama"] = "qwen2"  # architecture of a freshly built model (ignored with `path`)
    path: str | None = None  # checkpoint folder to load (save_pretrained layout); null: build a fresh model
    hidden_size: int = 64  # fresh model: width of the residual stream
    num_layers: int = 2  # fresh model: decoder layers
    num_heads: int = 4  # fresh model: attention (query) heads
    num_kv_heads: int = 2  # fresh model: key/value heads (grouped-query attention; divides num_heads)
    intermediate_size: int = 176  # fresh model: width of the MLP's hidden layer
    max_position_embeddings: int = 2048  # fresh model: longest sequence in tokens (RoPE table size)
    rope_theta: float = 10000.0  # fresh model: RoPE base frequency
    tie_word_embeddings: bool = False  # fresh model: share the input embedding and LM-head weights
    attn_implementation: str | None = None  # null: flash_attention_2 on GPU when installed, else sdpa
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more compute
    init_seed: int = 0  # seed of a fresh model's random initialisation


@dataclass
class TokenizerConfig:
    """`pretrained` uses the tokenizer at `path` (default: model.path); the others are trained on the
    training data at the start of a run and saved in the run directory (reused on resume)."""

    # number_word: one token per corpus word and per integer 0..number_max (best for tiny models);
    # bpe: byte-level BPE trained on the data; pretrained: load the tokenizer at `path`
    kind: Literal["number_word", "bpe", "pretrained"] = "bpe"
    path: str | None = None  # kind pretrained: tokenizer folder; null: model.path
    vocab_size: int = 2048  # total vocabulary (specials, numbers and 256 bytes included) of a trained tokenizer
    number_max: int = 1000  # number_word: integers 0..number_max get their own tokens
    min_frequency: int = 1  # trained tokenizers: words (bpe: merges) seen fewer times are left out


@dataclass
class DataFile:
    """One more JSONL of records mixed into every epoch, with its own loss mask."""

    path: str  # JSONL of records (fastcomt.comt layout)
    # what the loss covers: "response", the assistant response like data.train's records (plan_end
    # applies); "execution", only the text after the execution marker and the end of turn (the
    # question, the plan and the marker are context), e.g. execution documents rehearsed by a tiny
    # base model so that it keeps executing plans while it learns to write them
    loss_on: Literal["response", "execution"] = "response"
    limit: int | None = None  # use only the first N records; null: all


@dataclass
class DataConfig:
    """`train`: a JSONL of records (fastcomt.comt). With `build` set and the file missing, the file is
    built first from that data-build config (its `output` defaults to `train`)."""

    train: str  # JSONL of training records (fastcomt.comt), e.g. from `fastcomt data`
    # a data-build config (keys: `fastcomt data --help`) that builds `train` first when it is missing
    build: dict[str, Any] | None = None
    system_prompt: str | None = None  # system message before each question; null: none
    limit: int | None = None  # use only the first N records; null: all
    shuffle: bool = True  # shuffle the examples each epoch (seeded by `seed`) before packing
    # How a meta-thought example ends: "marker", the plan then the execution marker (the tokens
    # every execution of that plan continues in rollouts and evaluation), no end of turn; or
    # "end_of_turn", the plan then the chat template's end of turn. CoT examples always end with
    # the end of turn.
    plan_end: Literal["marker", "end_of_turn"] = "marker"
    # more data files, each with its own loss mask, appended to data.train's examples in this order:
    # each {path, loss_on: response | execution, limit} (loss_on execution: loss on the text after
    # the execution marker and the end of turn only)
    extra: list[DataFile] = field(default_factory=list)


@dataclass
class OptimConfig:
    """AdamW with warm-up + cosine; one optimizer step per `tokens_per_step` tokens (gradient
    accumulation over packed rows of up to `row_tokens` tokens)."""

    lr: float = 1e-3  # peak learning rate (AdamW), reached after the warm-up
    min_lr_ratio: float = 0.1  # cosine floor at the end of the schedule, as a fraction of lr (1.0: constant)
    warmup_steps: int = 10  # optimizer steps of linear warm-up
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW denominator guard
    grad_clip: float = 1.0  # clip the gradient's global L2 norm to this before each step
    row_tokens: int = 1024  # packed row length in tokens; longer examples are dropped (counted in the summary)
    tokens_per_step: int = 4096  # tokens per optimizer step: rows are accumulated up to this budget
    # packed rows per forward pass (stacked [R, row_tokens]): >1 is faster for small models, where
    # per-layer overhead dominates, at R rows' activation memory; the gradient is the same
    rows_per_forward: int = 1
    epochs: int = 1  # passes over the training data
    max_steps: int | None = None  # stop after this many optimizer steps; null: all epochs


def check_optim_counts(optim: OptimConfig, where: str = "optim") -> None:
    """The counts a run cannot start without (epochs, row and step sizes, rows per pass), checked
    before any work; `where` names the section in the error (e.g. "sft.optim" inside the demo)."""
    for key in ("epochs", "row_tokens", "tokens_per_step", "rows_per_forward"):
        if getattr(optim, key) < 1:
            raise ValueError(f"{where}.{key}: expected a positive int, got {getattr(optim, key)}")


@dataclass
class SFTConfig:
    output_dir: str  # run folder: final/ (the trained model), checkpoints/, metrics.jsonl, summary.json, tokenizer/
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0  # data order, packing and dropout
    device: str = "auto"  # auto: cuda when available, else cpu
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on GPU; CPU always runs fp32
    # auto: fused on a GPU, chunked on a CPU (the progress bar says which runs); fused: hidden states
    # into the fused linear cross-entropy kernel (no [tokens, vocab] logits); chunked: plain torch, the
    # logits of one chunk of tokens at a time, recomputed in the backward (bounded memory; ~10x faster
    # than the kernel on a CPU, where it runs in Triton's interpreter); torch: the model's own LM head
    # and F.cross_entropy over a whole packed row's logits
    loss: Literal["auto", "fused", "chunked", "torch"] = "auto"
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end
    keep_last: int = 2  # checkpoints kept on disk (older ones are deleted)
    resume: bool = True  # continue from output_dir/checkpoints/latest when present
    progress: bool = True  # tqdm bar with loss and tokens/s
