"""Rows out: machine description, JSON lines, ratios between methods and the markdown table."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import torch

from bench.bootstrap import REPO_ROOT
from fastcomt.atomic_io import write_text_atomic  # noqa: F401  (re-exported to bench/run.py)

ROW_KEY = ("n", "h", "v", "op", "method", "settings_id")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(device: str, kernels_source: str) -> dict:
    """What a reader needs to reproduce or distrust a number."""
    info = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if device == "cuda" else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "liger_kernel": _version("liger-kernel") or _version("liger_kernel"),
        "cut_cross_entropy": _version("cut-cross-entropy") or _version("cut_cross_entropy"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "kernels_source": kernels_source,
        "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
    }
    return info


def settings_id(settings: dict) -> str:
    """A short fingerprint of the settings that shape the numbers (resume only reuses matching rows)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in ROW_KEY)


def attach_ratios(rows: list[dict]) -> None:
    """Adds x_floor and ratio_to (this median / that median) to the rows of one (shape, op) group."""
    timed = {r["method"]: r["median_ms"] for r in rows if r.get("median_ms") and _ran(r)}
    floor = timed.get("floor")
    for r in rows:
        med = r.get("median_ms")
        if not med or not _ran(r):
            r["x_floor"], r["ratio_to"] = None, {}
            continue
        r["x_floor"] = med / floor if floor else None
        r["ratio_to"] = {m: med / other for m, other in timed.items() if m != r["method"]}


def _ran(row: dict) -> bool:
    return row.get("status", "").split(":")[0] in ("ok", "inaccurate", "unverified")


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Appends rows and syncs, so an interrupted run keeps every finished group."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a results file; the last row of a key wins and a torn last line is ignored."""
    if not path.exists():
        return []
    latest: dict[tuple, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            latest[row_key(row)] = row
    return list(latest.values())


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "nan"
    return format(value, spec)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rows: list[dict]) -> str:
    """Markdown table, one line per (shape, op, method), in the order the rows were measured."""
    head = [
        "shape N×H×V",
        "op",
        "method",
        "median ms",
        "min ms",
        "x floor",
        "x fastcomt",
        "peak GiB",
        "dh err",
        "dW err",
        "logp err",
        "status",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        vs_ours = r.get("ratio_to", {}).get("fastcomt")
        cells = [
            f"{r['n']}×{r['h']}×{r['v']}",
            r["op"],
            r["method"],
            _ms(r.get("median_ms")),
            _ms(r.get("min_ms")),
            _fmt(r.get("x_floor"), ".3g"),
            _fmt(vs_ours, ".3g"),
            _fmt(r.get("peak_gib"), ".2f"),
            _fmt(r.get("err_dh"), ".1e"),
            _fmt(r.get("err_dw"), ".1e"),
            _fmt(r.get("err_logp"), ".1e"),
            _clip(r.get("status", "?").replace("|", "/"), 72),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_header(machine: dict, settings: dict) -> str:
    """Lines printed above the table: where and how the numbers were taken."""
    where = machine["gpu"] or f"CPU ({machine['platform']})"
    lines = [
        f"device: {where}; torch {machine['torch']}, triton {machine['triton']}, "
        f"liger-kernel {machine['liger_kernel']}, cut-cross-entropy {machine['cut_cross_entropy']}",
        f"TF32 {'ON' if settings['tf32'] else 'off'}; {settings['reps']} timed repetitions after "
        f"{settings['warmup']} warm-up calls; seed {settings['seed']}; target entropy {settings['entropy']} nats; "
        f"policy loss {_policy_text(settings['policy'])}; torch.compile backend {settings['compile_backend']}",
        "columns: median/min ms per call (fwd+bwd for policy and ce, fwd for logprobs); x floor = median / "
        "GEMM floor; x fastcomt = median / fastcomt median; peak GiB = peak allocated above the inputs "
        "(gradients included); dh/dW err = relative L2 vs float32; logp err = max abs vs float32",
    ]
    if machine["device"] == "cpu":
        lines.insert(0, CPU_WARNING)
    return "\n".join(lines)


def format_inputs(rows: list[dict]) -> str:
    """Measured properties of each shape's inputs (the entropy is a target, this is what it hit)."""
    lines = ["inputs (bf16 hidden and head; mean entropy over unpadded tokens, padded fraction):"]
    seen = set()
    for r in rows:
        if r["shape"] in seen or r.get("measured_entropy") is None:
            continue
        seen.add(r["shape"])
        lines.append(
            f"  {r['shape']}: entropy {r['measured_entropy']:.3f} nats, padding "
            f"{r['measured_pad_fraction']:.1%}, {r['input_gib']:.2f} GiB of inputs"
        )
    return "\n".join(lines) if len(lines) > 1 else "inputs: none built in this run"


def _policy_text(policy: dict) -> str:
    return f"{policy['loss_type']} (eps_low {policy['eps_low']}, eps_high {policy['eps_high']}, no KL)"


def format_legend(rows: list[dict]) -> str:
    """What each short method name in the table stands for, with the settings it ran with."""
    lines = ["methods:"]
    seen = set()
    for r in rows:
        key = (r["op"], r["method"])
        if key in seen:
            continue
        seen.add(key)
        notes = f" [{r['notes']}]" if r.get("notes") else ""
        lines.append(f"  {r['op']}/{r['method']}: {r['label']}{notes}")
    return "\n".join(lines)


# The project's performance targets for the fused head (see bench/RESULTS.md).
TARGET_X_FLOOR = {"policy": 1.10, "logprobs": 1.15}
TARGET_EXTRA_GIB = 2.0  # plus the fp32 dW accumulator, V*H*4 bytes
TARGET_FLAT_GIB = 0.5  # extra memory may not grow by more than this from the smallest to the largest N


def format_targets(rows: list[dict], device: str) -> str:
    """One line per fastcomt target: measured against bar, per shape, and memory flatness per head."""
    if device != "cuda":
        return "targets: not evaluated on CPU (timings are not kernel speed, memory is not measured)"
    lines = ["targets (fastcomt):"]
    ours = [r for r in rows if r["method"] == "fastcomt"]
    for r in ours:
        bar = TARGET_X_FLOOR.get(r["op"])
        if bar is None:
            continue
        x = r.get("x_floor")
        verdict = "n/a" if x is None else ("MET" if x <= bar else "MISSED")
        text = f"  {r['shape']} {r['op']}: {_fmt(x, '.3f')}x floor (target <= {bar}) {verdict}"
        if r["op"] == "policy":
            extra, limit = r.get("extra_gib"), TARGET_EXTRA_GIB + r["v"] * r["h"] * 4 / float(1 << 30)
            verdict = "n/a" if extra is None else ("MET" if extra <= limit else "MISSED")
            text += f"; {_fmt(extra, '.2f')} GiB above inputs and grads (target <= {limit:.2f}) {verdict}"
        lines.append(text)
    for head in dict.fromkeys((r["h"], r["v"]) for r in ours if r["op"] == "policy"):
        pts = sorted(
            (r["n"], r["extra_gib"])
            for r in ours
            if r["op"] == "policy" and (r["h"], r["v"]) == head and r.get("extra_gib") is not None
        )
        if len(pts) >= 2:
            growth = pts[-1][1] - pts[0][1]
            verdict = "MET" if growth <= TARGET_FLAT_GIB else "MISSED"
            lines.append(
                f"  policy memory flat in N, H={head[0]} V={head[1]}: {pts[0][1]:.2f} GiB at N={pts[0][0]}, "
                f"{pts[-1][1]:.2f} GiB at N={pts[-1][0]} (growth <= {TARGET_FLAT_GIB} GiB) {verdict}"
            )
    return "\n".join(lines) if len(lines) > 1 else "targets: no fastcomt rows measured"


CPU_WARNING = (
    "CPU RUN: a smoke check of the harness. Kernels run under the Triton interpreter; "
    "these timings are NOT kernel speed and peak memory is not measured (n/a)."
)
