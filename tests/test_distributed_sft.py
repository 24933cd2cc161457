"""`fastcomt sft` under torchrun (2 CPU processes, gloo, FSDP2) against the same run on one process.

One chain of runs checks both the match and resuming across world sizes: one plain process stops
after step 1 (a one-process checkpoint); two ranks resume from it (full weights and optimizer state
sharded on load) and must give the one-process losses and gradient norms for steps 2-4 (same global
batch, same normaliser); rank 1 is killed while the step-4 checkpoint is being written (its shards on
disk, the checkpoint not complete): the half-written folder is ignored, and one plain process resumes
from the sharded step-3 checkpoint, redoes step 4 and finishes exactly as the one-process run did.
"""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torchrun_launch import torchrun

from fastcomt.comt.records import ComtRecord
from fastcomt.train.sft import run_sft

# tied LM head and embedding here (the root holds both); the CCRL test's model is untied (the embedding
# is its own FSDP unit)
MODEL = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 64,
    "tie_word_embeddings": True,
}
STEPS, FIRST, KILL_AFTER = 5, 1, 4


def _config(records, out_dir):
    return {
        "output_dir": str(out_dir),
        "data": {"train": str(records), "shuffle": True},
        "tokenizer": {"kind": "number_word", "number_max": 20},
        "model": MODEL,
        # 48-token rows, ~200 tokens a step: 3-4 packed rows per step, so the two ranks get 2 + 1 or 2 + 2
        "optim": {
            "row_tokens": 48,
            "tokens_per_step": 200,
            "warmup_steps": 1,
            "lr": 1e-2,
            "max_steps": STEPS,
            "epochs": 3,
        },
        "progress": False,
        "save_every": 1,
        "keep_last": 10,
    }


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "plans.jsonl"
    rows = [
        ComtRecord(
            f"toy-{i}",
            "toy",
            "meta_thought",
            f"Ana has {i + 2} pens and gets {2 * i + 1} more. How many?",
            "Steps:\n1. total = pens + more\nAnswer: total",
            float(3 * i + 3),
        ).to_dict()
        for i in range(12)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_then_two_ranks_then_one_match_the_one_process_run(records, tmp_path):
    one = run_sft(_config(records, tmp_path / "one"))
    assert one["steps"] == STEPS and one["world_size"] == 1

    two_dir = tmp_path / "two"
    first = run_sft(_config(records, two_dir), stop_after_steps=FIRST)
    assert first["steps"] == FIRST and not (two_dir / "checkpoints" / f"step_{FIRST:08d}" / "sharded").exists()
    # a resumed run keeps the lines of the steps it did not redo, timings included: a run that started
    # over instead would log the same losses (by design) but not the same timings
    before = (two_dir / "metrics.jsonl").read_text().splitlines()
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(_config(records, two_dir)))
    proc = torchrun(2, ["sft", str(config), "--kill-rank", "1", "--kill-in-save-step", str(KILL_AFTER)])
    assert proc.returncode != 0, "rank 1 was to be killed: " + proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpts = two_dir / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == f"step_{KILL_AFTER - 1:08d}"
    assert not (ckpts / f"step_{KILL_AFTER:08d}").exists()  # never complete, so never under its name
    # the half-written step: removed by rank 0 when its barrier failed, or left under the temp name
    assert {p.name for p in ckpts.iterdir() if f"{KILL_AFTER:08d}" in p.name} <= {f".tmp-step_{KILL_AFTER:08d}-sharded"}
    state = json.loads((ckpts / f"step_{KILL_AFTER - 1:08d}" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == KILL_AFTER - 1
    assert (ckpts / f"step_{KILL_AFTER - 1:08d}" / "sharded" / ".metadata").is_file()

    # the steps the two ranks did: the one-process losses and gradient norms
    lines = (two_dir / "metrics.jsonl").read_text().splitlines()
    assert lines[:FIRST] == before, "the two ranks did not resume from the one-process checkpoint"
    ref, got = _metrics(tmp_path / "one" / "metrics.jsonl"), _metrics(two_dir / "metrics.jsonl")
    assert [m["step"] for m in got[:KILL_AFTER]] == list(range(1, KILL_AFTER + 1))
    for r, g in zip(ref[FIRST:KILL_AFTER], got[FIRST:KILL_AFTER]):
        assert (g["tokens"], g["loss_tokens"], g["rows"]) == (r["tokens"], r["loss_tokens"], r["rows"])
        assert g["loss"] == pytest.approx(r["loss"], abs=1e-5, rel=1e-5)
        assert g["grad_norm"] == pytest.approx(r["grad_norm"], abs=1e-5, rel=1e-5)

    # one plain process picks the sharded checkpoint up and finishes as the one-process run did
    resumed = run_sft(_config(records, two_dir))
    assert resumed["steps"] == STEPS and resumed["world_size"] == 1
    # steps up to the complete checkpoint kept verbatim; step 4 (logged, its checkpoint lost) redone
    assert (two_dir / "metrics.jsonl").read_text().splitlines()[: KILL_AFTER - 1] == lines[: KILL_AFTER - 1]
    got = _metrics(two_dir / "metrics.jsonl")
    assert [m["step"] for m in got] == list(range(1, STEPS + 1))
    for r, g in zip(ref, got):
        assert g["loss"] == pytest.approx(r["loss"], abs=1e-5, rel=1e-5)
    a = load_file(tmp_path / "one" / "final" / "model.safetensors")
    b = load_file(two_dir / "final" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5)
