"""The chunk-size rule, config validation, and the smoke run that `fastcomt demo` prints."""

import pytest
import torch

from fastcomt.kernels import LMHeadConfig, get_lm_head_config, lm_head_config
from fastcomt.kernels.config import resolve_chunk_rows, resolve_launch
from fastcomt_recipes.kernels_smoke import run_smoke

CUDA = torch.device("cuda")  # only a label here: nothing is allocated on it
CPU = torch.device("cpu")


def test_chunk_rows_from_byte_budget():
    # bf16 GEMMs, fp32 logits (default): a row holds 151,936 fp32 logits and their bf16 gradient,
    # 6 bytes each; 1 GiB / (151,936 * 6) = 1177 rows, cut to a multiple of 128.
    assert resolve_chunk_rows(LMHeadConfig(), 151_936, torch.bfloat16, CUDA) == 1152
    # bf16 logits, gradient written in place: 1 GiB / (151,936 * 2) = 3533 rows -> 3456.
    assert resolve_chunk_rows(LMHeadConfig(fp32_logits=False), 151_936, torch.bfloat16, CUDA) == 3456
    # 256 MiB over an fp32 row of 32,000 logits = 2097 rows -> 2048.
    assert resolve_chunk_rows(LMHeadConfig(), 32_000, torch.float32, CPU) == 2048
    # Below the alignment the rows are kept as they are, and never drop under 1.
    assert resolve_chunk_rows(LMHeadConfig(chunk_bytes=100 * 300 * 4), 300, torch.float32, CPU) == 100
    assert resolve_chunk_rows(LMHeadConfig(chunk_bytes=1), 300, torch.float32, CPU) == 1
    # An explicit row count wins over the budget.
    assert resolve_chunk_rows(LMHeadConfig(chunk_rows=7, chunk_bytes=1), 300, torch.float32, CPU) == 7


def test_launch_defaults_and_context_manager():
    launch = resolve_launch(LMHeadConfig(), 151_936, torch.bfloat16, CUDA)
    assert (launch.block_v, launch.num_warps, launch.dw_in_weight_dtype) == (4096, 8, False)
    assert resolve_launch(LMHeadConfig(), 300, torch.float32, CPU).block_v == 512
    before = get_lm_head_config()
    with lm_head_config(chunk_rows=3, block_v=64):
        assert resolve_launch(None, 300, torch.float32, CPU)[:2] == (3, 64)
    assert get_lm_head_config() == before


@pytest.mark.parametrize(
    "kwargs, match",
    [({"chunk_rows": 0}, "chunk_rows"), ({"block_v": 100}, "block_v"), ({"num_warps": -1}, "num_warps")],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LMHeadConfig(**kwargs)


def test_smoke_rows_match_reference():
    rows = run_smoke(batch=2, seq_len=5, hidden_size=16, vocab_size=300)
    assert [r["function"] for r in rows] == ["linear_logprobs", "linear_cross_entropy", "linear_policy_loss"]
    for row in rows:
        assert set(row) == {"function", "shape", "max_abs_error", "seconds"}
        assert 0 <= row["max_abs_error"] <= 1e-5 and row["seconds"] > 0
