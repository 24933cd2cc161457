"""Ctrl-C / SIGTERM during `fastcomt sft` and `fastcomt rl`, sent to a real process: the step in
progress finishes, a checkpoint of it is written, one line says how to resume, the exit status is 130."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from toy_plans import write_toy_plans

TINY = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32}


def _start(argv, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "fastcomt.cli", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _interrupt_after_first_step(proc, metrics: Path, signum) -> tuple[str, str]:
    deadline = time.monotonic() + 180
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no step finished in 180 s"
        time.sleep(0.05)
    proc.send_signal(signum)
    return proc.communicate(timeout=180)


def _check_stopped(proc, out, err, run: Path, command: str, config: Path, overrides: list[str]):
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads(out[out.index("{") :])
    assert summary["interrupted"] and summary["stopped_by"] in ("SIGINT", "SIGTERM")
    assert summary["steps"] == steps[-1] and summary["final_model"] is None and not (run / "final").exists()
    checkpoint = Path(summary["checkpoint"])
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == steps[-1] and state["interrupted"] is True  # the finished step, checkpointed
    hint = [line for line in err.splitlines() if "resume with:" in line]
    assert len(hint) == 1
    assert hint[0].endswith("resume with: " + " ".join(["fastcomt", command, "--config", str(config), *overrides]))
    assert f"stopped after step {steps[-1]} of {summary['total_steps']}; checkpoint {checkpoint}" in hint[0]


def test_sigint_during_sft(tmp_path):
    data = tmp_path / "plans.jsonl"
    write_toy_plans(data, 16)
    config = tmp_path / "sft.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "run"),
                "data": {"train": str(data)},
                "progress": False,
                "model": TINY,
                "tokenizer": {"kind": "number_word", "number_max": 20},
                "device": "cpu",
                "optim": {
                    "row_tokens": 64,
                    "tokens_per_step": 64,
                    "epochs": 1000,
                },  # far more steps than the test waits for
            }
        )
    )
    overrides = ["seed=3"]
    proc = _start(["sft", "--config", str(config), *overrides], tmp_path)
    out, err = _interrupt_after_first_step(proc, tmp_path / "run" / "metrics.jsonl", signal.SIGINT)
    _check_stopped(proc, out, err, tmp_path / "run", "sft", config, overrides)


def test_sigterm_during_rl(tmp_path):
    from fastcomt.tasks import synthetic_problems
    from fastcomt.tokenizer import train_tokenizer
    from fastcomt.train.models import build_tiny_model
    from fastcomt_recipes.pretrain import tokenizer_texts

    tok = train_tokenizer(
        tokenizer_texts(synthetic_problems(16, seed=5)), kind="number_word", number_max=120, vocab_size=900
    )
    start = tmp_path / "start"
    build_tiny_model(TINY, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id).save_pretrained(
        start
    )
    tok.save_pretrained(start)
    config = tmp_path / "rl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "run"),
                "model": {"path": str(start)},
                "steps": 1000,
                "progress": False,
                "device": "cpu",
                "data": {"num_problems": 12},
                "rollout": {
                    "problems_per_step": 2,
                    "executions_per_plan": 2,
                    "max_new_tokens": 8,
                    "plan_max_new_tokens": 8,
                },
            }
        )
    )
    proc = _start(["rl", "--config", str(config)], tmp_path)
    out, err = _interrupt_after_first_step(proc, tmp_path / "run" / "metrics.jsonl", signal.SIGTERM)
    _check_stopped(proc, out, err, tmp_path / "run", "rl", config, [])
