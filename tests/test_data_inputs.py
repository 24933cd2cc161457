"""Data a user hands over is never dropped silently: `fastcomt data` with an SFT config honours
(or refuses) every override, and a cut-off last line of an SFT data file is counted and reported."""

import json
from pathlib import Path

from toy_plans import toy_plan_rows

from fastcomt.cli import main
from fastcomt.train.config import DataConfig

REPO = Path(__file__).resolve().parents[1]


def test_data_limit_limits_the_problems_built(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    assert main(["data", "--config", "configs/sft-synthetic-comt.yaml", "data.limit=30"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == 30 and report["kept_total"] + report["rejected_total"] == 30
    assert len((tmp_path / "data" / "synthetic_comt.jsonl").read_text().splitlines()) == report["kept_total"]


def test_data_build_limit_wins_over_data_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    assert main(["data", "--config", "configs/sft-synthetic-comt.yaml", "data.limit=30", "data.build.limit=12"]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == 12


def test_sft_config_without_build_section_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    assert main(["data", "--config", "configs/sft-synthetic-comt.yaml", "data.build=null"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.build: expected a mapping of data-build keys" in err


def _records(n):
    return toy_plan_rows(n)


def test_cut_off_last_line_is_counted_and_reported(tmp_path, capsys):
    from fastcomt.train.sft import load_training_records

    path = tmp_path / "plans.jsonl"
    lines = [json.dumps(r) + "\n" for r in _records(5)]
    path.write_text("".join(lines[:4]) + lines[4][:25])  # the fifth line was cut off mid-write
    skipped: dict[str, int] = {}
    records = load_training_records(DataConfig(train=str(path)), skipped=skipped)
    assert [r.id for r in records] == ["t-0", "t-1", "t-2", "t-3"]
    assert skipped == {"cut_off_last_line": 1}
    err = capsys.readouterr().err
    assert f"data.train: {path}: skipped 1 cut-off last line (25 bytes without a newline" in err
    assert "training on the 4 complete records" in err


def test_complete_file_reports_nothing(tmp_path, capsys):
    from fastcomt.train.sft import cut_off_tail, load_training_records

    path = tmp_path / "plans.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(3)))
    skipped: dict[str, int] = {}
    assert len(load_training_records(DataConfig(train=str(path)), skipped=skipped)) == 3
    assert skipped == {} and capsys.readouterr().err == "" and cut_off_tail(path) == 0
    path.write_text("no newline at all")
    assert cut_off_tail(path) == len("no newline at all")


def test_sft_summary_counts_the_skipped_line(tmp_path):
    from fastcomt.train.sft import run_sft

    path = tmp_path / "plans.jsonl"
    lines = [json.dumps(r) + "\n" for r in _records(6)]
    path.write_text("".join(lines[:5]) + lines[5][:-10])
    summary = run_sft(
        {
            "output_dir": str(tmp_path / "run"),
            "data": {"train": str(path)},
            "progress": False,
            "tokenizer": {"kind": "number_word", "number_max": 20},
            "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32},
            "optim": {"row_tokens": 64, "tokens_per_step": 64, "max_steps": 1},
        }
    )
    assert summary["skipped_records"] == {"cut_off_last_line": 1} and summary["examples"] == 5
