"""What a fresh clone's user runs into outside the code: generated data is ignored by git, and the
README names the install step."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generated_data_and_runs_are_ignored():
    for path in (
        "data/synthetic_comt.jsonl",
        "data/gsm8k_comt.report.json",
        "runs/sft-synthetic-comt/final/config.json",
    ):
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert done.returncode == 0, f"{path} is not ignored by .gitignore"


def test_readme_names_make_install():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make install" in text.split("## The pipeline")[0]  # before the commands that need it
