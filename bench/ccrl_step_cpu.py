"""Time a CCRL step of the demo's configuration with each LM head (plain torch, fused kernels).

After `make demo` (which leaves the CoMT SFT checkpoint and the tokenizer under runs/demo):

    python bench/ccrl_step_cpu.py --steps 3 --out bench/results/ccrl_step_cpu.json

runs `--steps` CCRL steps of `configs/demo.yaml`'s RL stage from the demo's SFT checkpoint, once per
head, in fresh output folders, and writes the per-step phase times (rollout, scoring, update, weight
sync), tokens/s and prefix-cache hit rate, with the demo run's own per-step means beside them.
On a CPU the fused head runs in Triton's interpreter (TRITON_INTERPRET=1 is set when there is no GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fastcomt  # noqa: E402,F401  (sets TRITON_INTERPRET=1 on a machine without a GPU)

KEYS = ("seconds", "time_rollout", "time_scoring", "time_update", "time_sync", "tokens_per_s", "rollout_tokens_per_s",
        "prefix_cache_hit_rate", "generated_tokens", "trained_tokens", "executions")  # fmt: skip


def _mean(rows: list[dict]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in KEYS}


def _demo_config():  # the demo's configuration: configs/demo.yaml
    from fastcomt_recipes.demo import DEFAULT_CONFIG, DemoConfig
    from fastcomt.config import load_config

    return load_config(DEFAULT_CONFIG, DemoConfig)


def _demo_rl_settings(demo_dir: Path, output_dir: str, steps: int, head: str) -> dict:
    """The demo's CCRL stage from its SFT checkpoint (`fastcomt_recipes.demo.rl_settings`), cut to `steps`
    steps with LM head `head`, in `output_dir`."""
    from fastcomt_recipes.demo import rl_settings

    cfg = _demo_config()
    sft = json.loads((demo_dir / "1_sft_comt" / "train" / "summary.json").read_text())
    return rl_settings(cfg, str(Path(sft["checkpoint"]) / "model"), str(demo_dir / "0_base" / "tokenizer"), output_dir,
                       extra={"steps": steps, "progress": False, "save_every": 0, "loss": {"lm_head": head}})  # fmt: skip


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", default="runs/demo", help="a finished `fastcomt demo` output folder")
    parser.add_argument("--steps", type=int, default=3, help="CCRL steps per head")
    parser.add_argument("--heads", default="torch,fused", help="comma-separated LM heads to time")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args()

    from fastcomt.jsonl import iter_jsonl_dicts
    from fastcomt.train.rl import run_rl

    demo_dir = Path(args.demo_dir)
    runs: dict[str, dict] = {}
    for head in args.heads.split(","):
        with tempfile.TemporaryDirectory(prefix=f"ccrl-{head}-") as tmp:
            run_rl(_demo_rl_settings(demo_dir, tmp, args.steps, head))
            rows = list(iter_jsonl_dicts(Path(tmp) / "metrics.jsonl"))
        runs[f"lm_head={head}"] = {"steps": len(rows), "mean_per_step": _mean(rows),
                                   "per_step": [{k: round(r[k], 4) for k in KEYS} for r in rows],
                                   "reward": [r["reward"] for r in rows], "loss": [r["loss"] for r in rows]}  # fmt: skip
        print(head, json.dumps(runs[f"lm_head={head}"]["mean_per_step"]), flush=True)
    demo_metrics = demo_dir / "2_ccrl" / "metrics.jsonl"
    if demo_metrics.exists():
        rows = list(iter_jsonl_dicts(demo_metrics))
        head = _demo_config().rl.get("loss", {}).get("lm_head", "fused")
        runs[f"demo run (lm_head={head}, {len(rows)} steps)"] = {
            "steps": len(rows), "mean_per_step": _mean(rows)}  # fmt: skip
    import torch
    import triton

    result = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, no GPU"
        if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "software": f"python {platform.python_version()}, torch {torch.__version__}, triton {triton.__version__}",
        "date": date.today().isoformat(),
        "command": "python bench/ccrl_step_cpu.py " + " ".join(sys.argv[1:]),
        "config": "configs/demo.yaml CCRL stage from the demo's CoMT SFT checkpoint",
        "units": {"seconds, time_*": "s per step", "tokens_per_s": "(generated + trained tokens) / step seconds",
                  "rollout_tokens_per_s": "generated tokens / rollout seconds",
                  "prefix_cache_hit_rate": "prefix tokens served from a shared prefill / prefix tokens requested"},
        "runs": runs,
    }  # fmt: skip
    if args.out:
        from fastcomt.atomic_io import write_json_atomic

        write_json_atomic(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
