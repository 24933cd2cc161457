"""Test-wide setup. TRITON_INTERPRET must be set before any @triton.jit function is defined,
so it is set here, at import time of the first conftest, when no CUDA device is present."""

import os

try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # the tasks tests need no torch
    _has_cuda = False

if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only benchmark files laid beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"benchmark data folder missing: {SHARED_DATA} (it is laid beside the checkout)")
    return SHARED_DATA
