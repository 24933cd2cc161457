"""User errors on the command line: one line naming the file or key and what was expected, exit
status 2, no traceback (unless --debug), checked before torch is imported; models given as the
wrong folder; damaged checkpoints named and skipped on resume."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toy_plans import write_toy_plans

from fastcomt.cli import main
from fastcomt.model_dir import model_dir_problem, tokenizer_dir_problem

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32}


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["sft"], "--config: expected a YAML file"),
        (["sft", "--config", "missing.yaml"], "--config: no file at missing.yaml"),
        (["sft", "--config", "configs/sft-synthetic-comt.yaml", "bogus=1"], "unknown key 'bogus'"),
        (
            ["sft", "--config", "configs/sft-synthetic-comt.yaml", "optim.lr=fast"],
            "optim.lr: expected float, got str 'fast'",
        ),
        (
            ["sft", "--config", "configs/sft-synthetic-comt.yaml", "data.train=nowhere.jsonl", "data.build=null"],
            "data.train: no file at nowhere.jsonl",
        ),
        (["sft", "--config", "configs/sft-synthetic-comt.yaml", "model.path=empty"], "model.path: empty is empty"),
        (
            ["rl", "--config", "configs/rl-synthetic-ccrl.yaml"],
            "model.path: no folder at runs/sft-synthetic-comt/final",
        ),
        (
            ["rl", "--config", "configs/rl-synthetic-ccrl.yaml", "steps=0", "model.path=empty"],
            "steps: expected an int >= 1",
        ),
        (["data", "--config", "configs/sft-synthetic-comt.yaml", "data.build.nope=3"], "unknown key 'nope'"),
        (["data", "--config", "configs/sft-synthetic-comt.yaml", "optim.epochs=many"], "optim.epochs: expected int"),
    ],
)
def test_one_line_exit_2(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "empty").mkdir()
    status, err = _run(argv, capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastcomt {argv[0]}: error: "), err
    assert expected in lines[0]
    if "bogus" in expected or "optim.lr" in expected:
        assert "configs/sft-synthetic-comt.yaml" in lines[0]  # the file is named with the key


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--config: no file at missing.yaml"):
        main(["sft", "--config", "missing.yaml", "--debug"])


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["sft", "--config", str(REPO / "configs/sft-synthetic-comt.yaml"), "optim.epochs=two"],
            "optim.epochs: expected int, got str 'two'",
        ),
        (
            ["rl", "--config", str(REPO / "configs/rl-synthetic-ccrl.yaml")],
            "model.path: no folder at runs/sft-synthetic-comt/final",
        ),
        (["eval", "--model", "runs/rl-synthetic-ccrl/final"], "--model: no folder at runs/rl-synthetic-ccrl/final"),
        (
            ["data", "--config", str(REPO / "configs/sft-synthetic-comt.yaml"), "data.build.mode=magic"],
            "configs/sft-synthetic-comt.yaml: data.build.mode: expected one of ['offline', 'teacher', 'cot'], got 'magic'",
        ),
    ],
)
def test_errors_come_before_torch_is_imported(tmp_path, argv, expected):
    """A user error in a subprocess: one line, status 2, and torch was never imported (fast)."""
    code = (
        "import sys; from fastcomt.cli import main; status = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_data_record_names_the_file_and_record(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    data = tmp_path / "plans.jsonl"
    good = {"id": "a", "source": "toy", "kind": "meta_thought", "question": "q?", "target": "t", "answer": 1}
    data.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "kind": "essay"}) + "\n")
    status, err = _run(["sft", "--config", "configs/sft-synthetic-comt.yaml", f"data.train={data}"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"data.train: {data}: record 2: kind: expected one of ('meta_thought', 'cot'), got 'essay'" in err
    data.write_text(json.dumps(good) + "\n{not json\n")
    status, err = _run(["sft", "--config", "configs/sft-synthetic-comt.yaml", f"data.train={data}"], capsys)
    assert status == 2 and err.count("\n") == 1 and f"{data}:2: not a JSON line" in err


def _save_model(path, with_tokenizer=True):
    from fastcomt.tokenizer import train_tokenizer
    from fastcomt.train.models import build_tiny_model

    tok = train_tokenizer(["a b c 1 2"], kind="number_word", number_max=5, vocab_size=300)
    build_tiny_model(TINY, len(tok)).save_pretrained(path)
    if with_tokenizer:
        tok.save_pretrained(path)


def test_model_folder_diagnosis(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "empty is empty; expected a saved model folder" in model_dir_problem(tmp_path / "empty", "--model")
    run = tmp_path / "run"
    _save_model(run / "checkpoints" / "step_00000002" / "model")
    _save_model(run / "checkpoints" / "step_00000004" / "model")
    message = model_dir_problem(run, "--model")
    assert (
        message
        == f"--model: {run} is a training run's folder, not a model; its model is {run}/checkpoints/step_00000004/model"
    )
    assert "the run has not finished (no final/ yet)" in model_dir_problem(run / "final", "model.path")
    _save_model(run / "final")
    assert model_dir_problem(run, "--model").endswith(f"its model is {run}/final")
    assert model_dir_problem(run / "final", "--model") is None
    _save_model(tmp_path / "weights_only", with_tokenizer=False)
    assert tokenizer_dir_problem(tmp_path / "weights_only", "--model") == (
        f"--model: no tokenizer files (tokenizer.json, tokenizer_config.json) in {tmp_path}/weights_only"
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    assert "has no config.json, so it is not a saved model" in model_dir_problem(tmp_path / "notes", "--model")


def test_eval_model_at_run_folder_names_the_model(tmp_path, capsys):
    run = tmp_path / "run"
    _save_model(run / "final")
    capsys.readouterr()
    status, err = _run(["eval", "--model", str(run), "--benchmarks", "svamp", "--limit", "1"], capsys)
    assert status == 2
    assert (
        err.strip()
        == f"fastcomt eval: error: --model: {run} is a training run's folder, not a model; its model is {run}/final"
    )
    (tmp_path / "empty").mkdir()
    status, err = _run(["eval", "--model", str(tmp_path / "empty")], capsys)
    assert status == 2 and "is empty; expected a saved model folder" in err and err.count("\n") == 1


# --- damaged checkpoints ----------------------------------------------------------------------------


def _two_checkpoints(root):
    from fastcomt.train.checkpoint import save_checkpoint
    from fastcomt.train.models import build_tiny_model

    models = []
    for step in (1, 2):
        model = build_tiny_model({**TINY, "init_seed": step}, 40)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model(input_ids=torch.arange(6)[None], labels=torch.arange(6)[None]).loss.backward()
        opt.step()
        save_checkpoint(root, step, model=model, optimizer=opt, trainer_state={"epoch": step})
        models.append(model)
    return models


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["optimizer.pt", "model/model.safetensors", "trainer_state.json", "rng.pt"])
def test_cut_off_file_is_named(tmp_path, name):
    from fastcomt.train.checkpoint import CheckpointError, load_checkpoint
    from fastcomt.train.models import build_tiny_model

    _two_checkpoints(tmp_path)
    newest = tmp_path / "step_00000002"
    _cut(newest / name)
    model = build_tiny_model(TINY, 40)
    with pytest.raises(CheckpointError, match=f"^{newest / name}: cannot be read .*cut off or damaged"):
        load_checkpoint(newest, model=model, optimizer=torch.optim.AdamW(model.parameters()))


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, capsys):
    from fastcomt.train.models import build_tiny_model
    from fastcomt.train.resume import resume_newest_loadable

    models = _two_checkpoints(tmp_path)
    _cut(tmp_path / "step_00000002" / "optimizer.pt")
    model = build_tiny_model({**TINY, "init_seed": 9}, 40)
    path, state = resume_newest_loadable(tmp_path, model=model, optimizer=torch.optim.AdamW(model.parameters()))
    assert path == tmp_path / "step_00000001" and state["epoch"] == 1
    for a, b in zip(model.state_dict().values(), models[0].state_dict().values()):
        assert torch.equal(a, b)  # the older checkpoint's weights, not a mix
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{tmp_path}/step_00000002/optimizer.pt: cannot be read" in err
    assert f"resuming from the older checkpoint {tmp_path}/step_00000001 instead" in err


def test_resume_with_no_loadable_checkpoint_says_which_files(tmp_path):
    from fastcomt.train.checkpoint import CheckpointError
    from fastcomt.train.models import build_tiny_model
    from fastcomt.train.resume import resume_newest_loadable

    _two_checkpoints(tmp_path)
    _cut(tmp_path / "step_00000002" / "trainer_state.json")
    _cut(tmp_path / "step_00000001" / "model" / "model.safetensors")
    model = build_tiny_model(TINY, 40)
    with pytest.raises(
        CheckpointError,
        match="no checkpoint loads .*step_00000002/trainer_state.json.*"
        "step_00000001/model/model.safetensors.*resume: false",
    ):
        resume_newest_loadable(tmp_path, model=model)


def test_sft_resume_skips_a_damaged_checkpoint(tmp_path, capsys):

    from fastcomt.train.sft import run_sft

    data = tmp_path / "plans.jsonl"
    write_toy_plans(data, 8)
    cfg = {
        "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data)},
        "progress": False,
        "tokenizer": {"kind": "number_word", "number_max": 20},
        "model": TINY,
        "save_every": 1,
        "keep_last": 5,
        "optim": {"row_tokens": 64, "tokens_per_step": 64, "epochs": 1},
    }
    done = run_sft(cfg, stop_after_steps=3)
    assert done["steps"] == 3
    _cut(tmp_path / "run" / "checkpoints" / "step_00000003" / "model" / "model.safetensors")
    summary = run_sft(cfg)
    assert summary["steps"] == summary["total_steps"]
    err = capsys.readouterr().err
    assert "step_00000003/model/model.safetensors: cannot be read" in err
    assert "resuming from the older checkpoint" in err and "step_00000002" in err
