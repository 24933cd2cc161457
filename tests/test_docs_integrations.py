"""docs/integrations.md runs as written: each ```python block is executed in a fresh namespace (in a
temporary directory), so the copy-paste examples cannot drift from the code."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
NAMES = ["trl", "verl", "plain_pytorch"]


def test_the_doc_has_its_three_examples():
    assert len(BLOCKS) == len(NAMES)


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_example_runs(index, tmp_path, monkeypatch, capsys):
    if NAMES[index] == "trl":
        pytest.importorskip("trl", reason="the TRL example needs trl==1.16.x (make install adds it)")
    if NAMES[index] == "verl":
        pytest.importorskip("verl", reason="the verl example needs verl 0.9.1 (make install adds it --no-deps)")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"{DOC.name}[{NAMES[index]}]", "exec"), {"__name__": "__docs__"})
    if NAMES[index] == "trl":
        # The example's settings are token-level: the 3-GEMM fused loss must have run.
        assert "loss path: fused_policy_loss" in capsys.readouterr().out
