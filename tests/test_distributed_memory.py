"""The memory estimate of docs/scale.md: its parameter count is the model's own, its items add up."""

import pytest
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from fastcomt.distributed.memory_estimate import GIB, PRESETS, LMShape, fsdp_memory, parameter_count


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_parameter_count_equals_the_model(family, tied):
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if family == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    config = config_cls(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    model = model_cls(config)
    assert parameter_count(LMShape.from_hf_config(config)) == sum(p.numel() for p in model.parameters())


def test_published_sizes():
    # the Qwen2.5 model cards: "1.54B" and "7.61B" parameters (cut to two decimals)
    assert parameter_count(PRESETS["qwen2.5-1.5b"]) // 10**7 == 154
    assert parameter_count(PRESETS["qwen2.5-7b"]) // 10**7 == 761


def test_sharded_state_is_16_bytes_per_parameter_over_the_gpus():
    shape = PRESETS["qwen2.5-7b"]
    one, eight = fsdp_memory(shape, gpus=1, tokens=4096), fsdp_memory(shape, gpus=8, tokens=4096)
    sharded = ("sharded fp32 weights", "sharded fp32 grads", "sharded AdamW moments")
    assert sum(one[k] for k in sharded) == pytest.approx(16 * parameter_count(shape) / GIB)
    assert sum(eight[k] for k in sharded) == pytest.approx(sum(one[k] for k in sharded) / 8)
    assert eight["total"] == pytest.approx(sum(v for k, v in eight.items() if k != "total"))
