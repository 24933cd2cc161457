"""The benchmark harness (bench/): a CPU smoke run of bench/run.py from a tree where fastcomt.kernels
is not importable as installed, plus the pieces whose correctness the table's trust rests on: the
eager baseline against the kernels' float64 references, the chunked float32 ground truth against the
unchunked one, the input generator's entropy and sampling, ratios, targets, budget and resume."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.eager import PolicyConfig, eager_cross_entropy, eager_logprobs, eager_policy_loss  # noqa: E402
from bench.ground_truth import ce_truth, logprobs_truth, policy_truth  # noqa: E402
from bench.inputs import Shape, calibrate_head_scale, make_inputs, parse_shapes  # noqa: E402
from bench.report import attach_ratios, format_targets, read_jsonl  # noqa: E402

# Every (op, method) the harness promises a row for, written out independently of bench/methods.py.
EXPECTED_ROWS = (
    {("policy", m) for m in ("floor", "fastcomt", "eager", "compile", "liger", "cce", "trl", "verl")}
    | {("logprobs", m) for m in ("floor", "fastcomt", "eager", "compile", "trl", "verl")}
    | {("ce", m) for m in ("floor", "fastcomt", "eager", "compile", "liger", "cce", "cce-nofilter")}
)

# Runs bench/run.py with the installed `fastcomt.kernels` hidden, as on a machine without the package.
_BLOCKED_RUN = """
import runpy, sys
class HideInstalledKernels:
    def find_spec(self, name, path=None, target=None):
        if name == "fastcomt.kernels":
            raise ModuleNotFoundError("fastcomt.kernels hidden by the test")
        return None
sys.meta_path.insert(0, HideInstalledKernels())
sys.argv = ["bench/run.py", *sys.argv[1:]]
runpy.run_path("bench/run.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [
        sys.executable,
        "-c",
        _BLOCKED_RUN,
        "--device",
        "cpu",
        "--shapes",
        "32:32:500",
        "--reps",
        "3",
        "--warmup",
        "1",
        "--out",
        str(out / "rows.jsonl"),
        "--plot",
        str(out / "plot.png"),
        "--table",
        str(out / "table.md"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Rows are appended as they are measured, then again with their group's ratios: the last one of a
    # key is the row (read_jsonl's rule).
    rows = read_jsonl(out / "rows.jsonl")
    return proc, rows, out


def test_smoke_every_method_has_a_row_with_a_status(smoke_run):
    _, rows, _ = smoke_run
    assert {(r["op"], r["method"]) for r in rows} == EXPECTED_ROWS
    assert len(rows) == len(EXPECTED_ROWS)
    by = {(r["op"], r["method"]): r for r in rows}
    for op in ("policy", "logprobs", "ce"):
        for method in ("floor", "fastcomt", "eager", "compile"):
            assert by[op, method]["status"].split(":")[0] in ("ok", "inaccurate"), by[op, method]["status"]
    assert by["policy", "fastcomt"]["status"] == "ok"
    assert by["logprobs", "fastcomt"]["status"] == "ok"
    assert by["ce", "fastcomt"]["status"] == "ok"
    for key in (("policy", "cce"), ("ce", "cce"), ("ce", "cce-nofilter"), ("policy", "liger"), ("ce", "liger")):
        status = by[key]["status"]
        assert status.startswith(("ok", "inaccurate", "skipped: needs CUDA")), (key, status)
    # TRL's head falls back to torch tiles off CUDA, so it runs here; verl's asserts CUDA tensors.
    for op in ("policy", "logprobs"):
        assert by[op, "trl"]["status"].split(":")[0] in ("ok", "inaccurate"), by[op, "trl"]["status"]
        assert by[op, "verl"]["status"].startswith(("skipped: needs CUDA", "unavailable")), by[op, "verl"]["status"]


def test_smoke_methods_that_ran_agree_with_float32(smoke_run):
    _, rows, _ = smoke_run
    ran = [r for r in rows if r["status"].split(":")[0] in ("ok", "inaccurate") and r["method"] != "floor"]
    assert {r["method"] for r in ran} >= {"fastcomt", "eager", "compile"}
    for r in ran:
        # bf16 logits (eager, peers) stay within a few 1e-2; a wrong loss definition would be O(1).
        bound = 1e-2 if r["method"] == "fastcomt" else 5e-2
        if r["op"] in ("policy", "ce"):
            assert r["err_dh"] <= bound and r["err_dw"] <= bound, r
            assert r["err_loss"] <= 5e-2, r
        else:
            assert r["err_logp"] <= 2 * bound and r["err_entropy"] <= 0.1, r
        assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] and len(r["times_ms"]) == 3
        assert r["x_floor"] > 0
        assert r["peak_gib"] is None  # not measured on CPU, and the row says so rather than guessing


def test_smoke_records_machine_source_tree_and_inputs(smoke_run):
    _, rows, _ = smoke_run
    for r in rows:
        m = r["machine"]
        assert m["kernels_source"] == "source folder"  # the installed package was hidden
        assert m["triton_interpret"] is True and m["device"] == "cpu"
        assert m["torch"] == torch.__version__ and m["date"] and "--device cpu" in m["command"]
        assert r["tf32"] is False and r["seed"] == 0
    measured = [r for r in rows if "measured_entropy" in r]
    assert measured and all(abs(r["measured_entropy"] - 2.0) < 0.5 for r in measured)


def test_smoke_prints_warning_table_last_and_writes_plot(smoke_run):
    proc, _, out = smoke_run
    assert "NOT kernel speed" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("| 32×32×500 | ce |"), last
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.md").read_text() == proc.stdout


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_eager_policy_loss_matches_kernels_reference_in_float64(loss_type):
    from fastcomt.kernels import reference_linear_policy_loss

    g = torch.Generator().manual_seed(1)
    b, t, h, v = 3, 5, 8, 40
    hidden = torch.randn(b, t, h, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, v, (b, t), generator=g)
    mask = torch.rand(b, t, generator=g) > 0.3
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    old = torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3 - 3.0
    cfg = PolicyConfig(loss_type=loss_type, eps_low=0.1, eps_high=0.15).as_dict()
    ours = eager_policy_loss(hidden, weight, targets, mask, adv, old, **cfg)
    d_ours = torch.autograd.grad(ours, (hidden, weight))
    ref, _ = reference_linear_policy_loss(hidden, weight, targets, mask, adv, old, **cfg)
    d_ref = torch.autograd.grad(ref, (hidden, weight))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, r in zip(d_ours, d_ref):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


def test_eager_scoring_and_ce_match_kernels_reference_in_float64():
    from fastcomt.kernels import reference_linear_cross_entropy, reference_linear_logprobs

    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(12, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(30, 8, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 30, (12,), generator=g)
    mask = torch.arange(12) % 4 != 3
    for a, r in zip(
        eager_logprobs(hidden, weight, targets, mask), reference_linear_logprobs(hidden, weight, targets, mask=mask)
    ):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    t_ce = torch.where(mask, targets, -100)
    torch.testing.assert_close(
        eager_cross_entropy(hidden, weight, t_ce),
        reference_linear_cross_entropy(hidden, weight, t_ce),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.fixture(scope="module")
def tiny_inputs():
    return make_inputs(Shape(64, 16, 200), seq_len=8, device="cpu", seed=3)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_chunked_policy_truth_equals_unchunked(tiny_inputs, loss_type):
    import fastcomt.kernels as kernels

    x = tiny_inputs
    cfg = PolicyConfig(loss_type=loss_type)
    whole = policy_truth(x, kernels, cfg, chunk_elems=1 << 30)  # one chunk: the reference as it is
    per_seq = policy_truth(x, kernels, cfg, chunk_elems=1)  # one sequence per chunk
    h64 = x.bt(x.hidden.detach().double()).requires_grad_(True)
    w64 = x.weight.detach().double().requires_grad_(True)
    ref, _ = kernels.reference_linear_policy_loss(
        h64, w64, x.bt(x.targets), x.bt(x.mask), x.advantages.double(), x.bt(x.old_logprobs.double()), **cfg.as_dict()
    )
    ref.backward()
    for truth in (whole, per_seq):
        assert math.isclose(truth.loss, ref.item(), rel_tol=1e-5, abs_tol=1e-6)
        torch.testing.assert_close(truth.dh, h64.grad.reshape(64, 16).float(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(truth.dw, w64.grad.float(), rtol=1e-4, atol=1e-6)


def test_chunked_ce_and_logprobs_truth_equal_unchunked(tiny_inputs):
    import fastcomt.kernels as kernels

    x = tiny_inputs
    a, b = ce_truth(x, kernels, chunk_elems=1 << 30), ce_truth(x, kernels, chunk_elems=7 * 200)
    assert math.isclose(a.loss, b.loss, rel_tol=1e-6)
    torch.testing.assert_close(a.dh, b.dh)
    torch.testing.assert_close(a.dw, b.dw, rtol=1e-5, atol=1e-7)
    a, b = logprobs_truth(x, kernels, chunk_elems=1 << 30), logprobs_truth(x, kernels, chunk_elems=5 * 200)
    for name in ("logp", "entropy", "maxprob"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    assert (a.logp[~x.mask] == 0).all() and (a.logp[x.mask] < 0).all()


def test_inputs_hit_entropy_sample_from_the_model_and_are_seeded():
    x = make_inputs(Shape(512, 32, 500), seq_len=32, device="cpu", seed=5, target_entropy=2.0)
    assert abs(x.measured_entropy - 2.0) < 0.2
    assert 0.04 < x.pad_fraction < 0.17
    # Targets drawn from p give E[log p(target)] = -entropy; uniform targets would give ~ -log V - more.
    with torch.no_grad():
        logp = torch.log_softmax(x.hidden.float() @ x.weight.float().T, -1).gather(1, x.targets[:, None])[:, 0]
    assert abs(float(logp[x.mask].mean()) + x.measured_entropy) < 0.3
    noise = (x.old_logprobs - logp)[x.mask]
    assert abs(float(noise.std()) - 0.1) < 0.02
    assert (x.targets_ce[~x.mask] == -100).all() and (x.targets_ce[x.mask] == x.targets[x.mask]).all()
    assert x.advantages.shape == (16,) and x.hidden.dtype == torch.bfloat16 and x.hidden.requires_grad
    again = make_inputs(Shape(512, 32, 500), seq_len=32, device="cpu", seed=5)
    other = make_inputs(Shape(512, 32, 500), seq_len=32, device="cpu", seed=6)
    assert torch.equal(again.hidden, x.hidden) and torch.equal(again.targets, x.targets)
    assert not torch.equal(other.hidden, x.hidden)


def test_head_scale_bisection_recovers_a_hand_computed_scale():
    # Two classes with logits (0, 1) scaled by s=3: p = (1, e^3) / (1 + e^3).
    p1 = math.exp(3) / (1 + math.exp(3))
    target = -(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1))
    assert math.isclose(calibrate_head_scale(torch.tensor([[0.0, 1.0]]), target), 3.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="target_entropy"):
        calibrate_head_scale(torch.tensor([[0.0, 1.0]]), 0.8)  # above log 2


def test_bad_shapes_and_options_are_rejected():
    with pytest.raises(ValueError, match="N:H:V"):
        parse_shapes("64:32")
    with pytest.raises(ValueError, match="N:H:V"):
        parse_shapes("a:b:c")
    with pytest.raises(ValueError, match="seq_len"):
        make_inputs(Shape(10, 4, 20), seq_len=3, device="cpu")
    with pytest.raises(ValueError, match="loss_type"):
        PolicyConfig(loss_type="ppo")
    from bench.run import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--ops", "policy,bogus"])


def test_ratios_and_targets_from_hand_made_rows():
    def row(method, ms, status="ok", **kw):
        return {
            "n": 4096,
            "h": 8,
            "v": 16,
            "shape": "4096x8x16",
            "op": "policy",
            "method": method,
            "median_ms": ms,
            "status": status,
            **kw,
        }

    rows = [
        row("floor", 10.0),
        row("fastcomt", 10.5, extra_gib=1.0),
        row("eager", 20.0),
        row("liger", None, status="oom"),
    ]
    attach_ratios(rows)
    assert rows[1]["x_floor"] == pytest.approx(1.05)
    assert rows[2]["ratio_to"]["fastcomt"] == pytest.approx(20.0 / 10.5)
    assert rows[3]["x_floor"] is None and rows[3]["ratio_to"] == {}
    text = format_targets(rows, "cuda")
    assert "1.050x floor (target <= 1.1) MET" in text and "MET" in text.split(";")[1]
    rows[1]["x_floor"] = 1.2
    assert "MISSED" in format_targets(rows, "cuda")
    assert "not evaluated on CPU" in format_targets(rows, "cpu")


def test_budget_skips_are_rows_and_resume_fills_them(tmp_path, capsys):
    from bench.run import main

    out = tmp_path / "rows.jsonl"
    args = [
        "--device",
        "cpu",
        "--shapes",
        "16:8:50",
        "--ops",
        "ce",
        "--methods",
        "eager",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--tol-grad",
        "1",
        "--out",
        str(out),
    ]
    assert main([*args, "--budget-s", "0"]) == 0
    first = read_jsonl(out)
    assert {r["method"] for r in first} == {"floor", "eager"}
    assert all(r["status"].startswith("skipped: time budget") for r in first)
    assert main([*args, "--resume"]) == 0
    second = read_jsonl(out)
    assert {r["method"]: r["status"] for r in second} == {"floor": "ok", "eager": "ok"}
    lines = out.read_text().count("\n")
    assert main([*args, "--resume"]) == 0  # nothing left to do: nothing measured again
    assert out.read_text().count("\n") == lines
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("| 16×8×50 | ce | eager |")


def test_failures_become_rows_with_statuses(tiny_inputs):
    import fastcomt.kernels as kernels
    from bench.measure import Tolerances, run_method
    from bench.methods import BuildContext, Method, Runner

    def missing(ctx):
        raise ImportError("No module named 'peer'")

    def raising(ctx):
        def step():
            raise RuntimeError("kernel exploded")

        return Runner(step=step, collect=lambda _: None)

    def out_of_memory(ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    ctx = BuildContext(
        inputs=tiny_inputs, kernels=kernels, policy=PolicyConfig(), compile_backend="eager", device="cpu"
    )
    cases = {
        Method("peer", "ce", "a peer", missing): "unavailable: ImportError: No module named 'peer'",
        Method("x", "ce", "raises", raising): "failed: RuntimeError: kernel exploded",
        Method("x", "ce", "raises", raising, needs_cuda=True): "skipped: needs CUDA (RuntimeError on CPU)",
        Method("x", "ce", "oom", out_of_memory): "oom",
    }
    for method, status in cases.items():
        row = run_method(method, ctx, None, None, warmup=1, reps=1, tol=Tolerances())
        assert row["status"] == status and "median_ms" not in row
