"""Per-GPU memory of training a Hugging Face causal LM under this project's FSDP2 layout, computed
from the model config (no GPU needed): the numbers quoted in docs/scale.md.

    python -m fastcomt.distributed.memory_estimate --preset qwen2.5-7b --gpus 8 --tokens 16384

What is counted (bytes; GiB = 2**30):
- sharded state, per rank 1/N of: fp32 master weights (4 B/param), fp32 gradients (4), AdamW moments (8);
- unsharded bf16 compute copies: the root (final norm, LM head, and the embedding when tied; it stays
  gathered from its forward to the end of its backward), an untied embedding (its own unit, gathered
  for its lookup and its backward only) and two decoder layers (the one running and the prefetched one);
- gradients before their reduce-scatter: the root's, in bf16 plus the fp32 copy FSDP reduces (held
  until the end of the backward), and one layer's likewise;
- the fused LM head: its fp32 dW accumulator [V, H] and one chunk of fp32 logits (`chunk_bytes`);
- activations with gradient checkpointing per decoder layer: each layer's bf16 input kept
  ([tokens, H]), plus one layer's tensors saved for its backward while it is recomputed (norm output,
  q/k/v, attention output, two residual branches, gate, up and their product; flash attention keeps no
  [tokens, tokens] scores).
Not counted: the CUDA context and allocator fragmentation (budget 1-3 GiB), NCCL buffers, a rollout
engine sharing the GPU (see `rollout_copy_gib`), the KV cache of generation.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

__all__ = ["LMShape", "PRESETS", "parameter_count", "fsdp_memory", "main"]

GIB = 1 << 30


@dataclass(frozen=True)
class LMShape:
    """The sizes of a Qwen2/Llama-style decoder that determine its parameter count and activations."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    tie_word_embeddings: bool
    qkv_bias: bool = True  # Qwen2 has q/k/v biases, Llama none

    @property
    def kv_dim(self) -> int:
        return self.hidden_size // self.num_heads * self.num_kv_heads

    @classmethod
    def from_hf_config(cls, config: Any) -> LMShape:
        return cls(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            num_kv_heads=config.num_key_value_heads,
            tie_word_embeddings=bool(config.tie_word_embeddings),
            qkv_bias=getattr(config, "model_type", "qwen2") == "qwen2",
        )


# The published configs (config.json of Qwen/Qwen2.5-1.5B and Qwen/Qwen2.5-7B).
PRESETS = {
    "qwen2.5-1.5b": LMShape(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_layers=28,
        num_heads=12,
        num_kv_heads=2,
        tie_word_embeddings=True,
    ),
    "qwen2.5-7b": LMShape(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        tie_word_embeddings=False,
    ),
}


def layer_parameters(s: LMShape) -> int:
    h, kv, i = s.hidden_size, s.kv_dim, s.intermediate_size
    attention = h * h + 2 * h * kv + h * h + ((h + 2 * kv) if s.qkv_bias else 0)
    return attention + 3 * h * i + 2 * h  # + gate/up/down, two RMSNorms


def root_parameters(s: LMShape) -> int:
    """The final norm and the LM head (the embedding too when tied): what the FSDP root holds."""
    return s.vocab_size * s.hidden_size + s.hidden_size


def embedding_unit_parameters(s: LMShape) -> int:
    """An untied input embedding, sharded as its own unit (0 when tied: it is the LM head)."""
    return 0 if s.tie_word_embeddings else s.vocab_size * s.hidden_size


def parameter_count(s: LMShape) -> int:
    return s.num_layers * layer_parameters(s) + root_parameters(s) + embedding_unit_parameters(s)


def fsdp_memory(s: LMShape, *, gpus: int, tokens: int, chunk_bytes: int = 1 << 30) -> dict[str, float]:
    """GiB per GPU of each item in the module docstring, and their sum ("total": an upper bound, since
    the transient items, such as the head's dW accumulator and the root's gradients, do not all
    coexist)."""
    if gpus < 1 or tokens < 1:
        raise ValueError(f"gpus, tokens: expected positive ints, got {gpus}, {tokens}")
    params, layer, root = parameter_count(s), layer_parameters(s), root_parameters(s)
    h, kv, i = s.hidden_size, s.kv_dim, s.intermediate_size
    items = {
        "sharded fp32 weights": 4 * params / gpus,
        "sharded fp32 grads": 4 * params / gpus,
        "sharded AdamW moments": 8 * params / gpus,
        "root bf16 (head, norm)": 2 * root,
        "root grads bf16 + fp32": 6 * root,
        "untied embedding bf16 + grads": 8 * embedding_unit_parameters(s),
        "2 layers bf16 (run + prefetch)": 2 * 2 * layer,
        "1 layer grads bf16 + fp32": 6 * layer,
        "fused head dW fp32": 4 * s.vocab_size * h,
        "fused head logits chunk": min(chunk_bytes, 4 * tokens * s.vocab_size),
        "checkpointed layer inputs": 2 * s.num_layers * tokens * h,
        "one layer recomputed": 2 * tokens * (6 * h + 2 * kv + 3 * i),
    }
    out = {k: v / GIB for k, v in items.items()}
    out["total"] = sum(out.values())
    return out


def rollout_copy_gib(s: LMShape) -> float:
    """A full bf16 copy of the weights (the Transformers rollout engine on each rank)."""
    return 2 * parameter_count(s) / GIB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="qwen2.5-7b")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per micro-batch per GPU")
    args = parser.parse_args(argv)
    shape = PRESETS[args.preset]
    print(f"{args.preset}: {parameter_count(shape) / 1e9:.3f} B parameters, {args.gpus} GPUs, {args.tokens} tokens/GPU")
    for key, gib in fsdp_memory(shape, gpus=args.gpus, tokens=args.tokens).items():
        print(f"  {key:32s} {gib:7.2f} GiB")
    print(
        f"  (+ a Transformers rollout engine on the same GPU: {rollout_copy_gib(shape):.2f} GiB of bf16 weights + KV cache)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
