"""Launching a few CPU processes with torchrun (gloo) from a test: a free port, one thread each."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DRIVER = Path(__file__).with_name("distributed_driver.py")


def torchrun(
    nproc: int, args: Sequence[str], *, script: str = DRIVER.name, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc_per_node nproc` of tests/<script> (default: distributed_driver.py) with `args`
    (the result, not checked)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    # --standalone: a rendezvous on localhost at a port the OS picks (no port chosen here that another
    # process could take in between)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "--max_restarts=0",
        str(DRIVER.with_name(script)),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
