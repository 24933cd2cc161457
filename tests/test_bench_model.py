"""bench/model.py: the first-principles estimate, checked against cases computed by hand."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.model import estimate  # noqa: E402

# N=1000, H=100, V=1000, 3 chunks (400, 400, 200), bf16 GEMMs, fp32 logits, 1 TFLOP/s.
SHAPE = dict(n=1000, h=100, v=1000, chunk_rows=400, dtype="bf16", fp32_logits=True, tflops=1.0)


def test_compute_bound_case():
    e = estimate(**SHAPE, tbps=1.0)
    # 3 GEMMs of 2*N*H*V = 2e8 FLOPs at 1e12 FLOP/s.
    assert e.chunks == 3 and e.floor_ms == pytest.approx(0.6)
    assert e.gemm_roofline_ms == pytest.approx(0.6)  # every GEMM compute-bound at 1 TB/s
    # Row kernel: N*V*(4 + 4 + 2) = 1e7 bytes; dW: V*H*4*(1 + 2 + 2) = 2e6; finish: V*H*6 + 2*N*H*2 = 1e6.
    assert e.row_kernel_ms == pytest.approx(0.01)
    assert e.dw_traffic_ms == pytest.approx(0.002)
    assert e.finish_ms == pytest.approx(0.001)
    assert e.total_ms == pytest.approx(0.611) and e.upper_ms == pytest.approx(0.613)


def test_memory_bound_case():
    e = estimate(**SHAPE, tbps=0.01)
    # logits GEMM 4.8e6 B, dh GEMM 2.8e6 B, dW chunks 1.28e6 (writes dW), 1.68e6, 1.24e6 B at 1e10 B/s:
    # 0.48 + 0.28 + 0.128 + 0.168 + 0.124 ms, each above its 0.2 / 0.08 / 0.04 ms of FLOPs.
    assert e.gemm_roofline_ms == pytest.approx(1.18)
    assert e.total_ms == pytest.approx(1.18 + 1.0 + 0.1)


def test_score_is_one_gemm_and_one_read():
    e = estimate(**SHAPE, tbps=1.0, op="score")
    assert e.floor_ms == pytest.approx(0.2) and e.row_kernel_ms == pytest.approx(0.004)
    assert e.dw_traffic_ms == 0 and e.finish_ms == 0


def test_cli_prints_the_estimate_with_the_library_chunk_rule():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "model.py"), "--shape", "16384:3584:152064"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "chunk_rows               1664" in proc.stdout  # 1.5 GiB / (152064 * 6 bytes), cut to 128s
    assert "ratio to floor" in proc.stdout
