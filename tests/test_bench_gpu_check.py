"""bench/gpu_check.sh rehearsed on CPU (GPU_CHECK_DRY_RUN=1): our kernel is made to fail, and the
preflight, the floor's and the peers' rows must still be recorded, each as soon as it is measured,
with fastcomt measured last in its group and the failure reported in the exit status."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.report import read_jsonl  # noqa: E402


def _dry_run(out: Path, simulate: str, extra: str, method_timeout_s: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(
        PYTHON=sys.executable,
        GPU_CHECK_DRY_RUN="1",
        GPU_CHECK_SIMULATE=simulate,
        GPU_CHECK_METHOD_TIMEOUT_S=str(method_timeout_s),
        GPU_CHECK_SITE=str(out / "no-site"),  # the peers come from this environment, no wheel folder
        GPU_CHECK_EXTRA=extra,
    )
    return subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), str(out)], env=env, capture_output=True, text=True, timeout=500
    )


@pytest.fixture(scope="module")
def failed_kernel_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    return _dry_run(out, "error", "--ops policy"), out


def test_preflight_runs_first_and_passes(failed_kernel_run):
    proc, out = failed_kernel_run
    preflight = json.loads((out / "preflight.json").read_text())
    assert preflight["ok"] and preflight["kernel_interpreted"] is True, preflight
    assert preflight["launch_max_abs_err"] <= 2e-2
    assert proc.stdout.index("== 0/2 preflight") < proc.stdout.index("== 1/2 correctness")


def test_floor_and_peers_survive_a_failure_of_our_kernel(failed_kernel_run):
    proc, out = failed_kernel_run
    assert proc.returncode != 0, proc.stdout[-2000:]  # --strict reports the failed kernel
    rows = {r["method"]: r for r in read_jsonl(out / "results.jsonl")}
    assert rows["floor"]["status"] == "ok" and rows["floor"]["median_ms"] > 0
    assert rows["trl"]["status"].split(":")[0] in ("ok", "inaccurate") and rows["trl"]["err_dh"] < 5e-2
    for peer in ("liger", "cce", "verl"):
        assert rows[peer]["status"].startswith(("ok", "inaccurate", "skipped: needs CUDA", "unavailable")), rows[peer]
    assert rows["fastcomt"]["status"].startswith("failed: RuntimeError: simulated failure of fastcomt")
    assert "elapsed" in proc.stdout and "correctness exit 1" in proc.stdout


def test_rows_are_written_as_measured_with_fastcomt_last(failed_kernel_run):
    _, out = failed_kernel_run
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    first_seen = list(dict.fromkeys(r["method"] for r in lines))
    assert first_seen[0] == "floor" and first_seen[-1] == "fastcomt", first_seen
    # Each measurement leaves a placeholder, then its result, then the result with the group's ratios.
    floor = [r for r in lines if r["method"] == "floor"]
    assert floor[0]["status"].startswith("timeout: the process was killed") and floor[-1]["status"] == "ok"


def test_a_hang_in_our_kernel_times_out_and_the_script_goes_on(tmp_path):
    proc = _dry_run(tmp_path, "hang", "--ops policy --methods fastcomt", method_timeout_s=3)
    rows = {r["method"]: r for r in read_jsonl(tmp_path / "results.jsonl")}
    assert rows["floor"]["status"] == "ok"
    assert rows["fastcomt"]["status"] == "timeout: no result within 3 s", rows["fastcomt"]
    assert "== 2/2" in proc.stdout and (tmp_path / "table.md").exists()
