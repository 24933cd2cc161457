"""Setup for the pytest-benchmark suite (`make bench` runs `pytest bench --benchmark-only`).

`pytest bench` does not load tests/conftest.py, so the same two things are done here: the Triton
interpreter switch (read when a kernel is defined, so before any kernel import) when there is no
GPU, and the `shared_data` fixture for benchmarks that read the benchmark files beside the checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:
    _has_cuda = False

if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only benchmark files laid beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"benchmark data folder missing: {SHARED_DATA} (it is laid beside the checkout)")
    return SHARED_DATA
