"""The final model folder (`<output_dir>/final`), file permissions of atomic writes, and no
transformers progress bars breaking into ours when a model is saved."""

import json
import os
import stat

import pytest
import torch

from fastcomt.atomic_io import write_json_atomic, write_text_atomic
from fastcomt.tokenizer import load_tokenizer, train_tokenizer
from fastcomt.train.checkpoint import save_checkpoint
from fastcomt.train.final_model import final_model_dir, write_final_model
from fastcomt.train.models import build_tiny_model

TINY = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(
        ["Ana has 3 pens and gets 2 more", "The answer is 5."], kind="number_word", number_max=20, vocab_size=400
    )


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_final_model_round_trips(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM

    model = build_tiny_model(TINY, len(tokenizer))
    final = write_final_model(tmp_path / "run", model=model, tokenizer=tokenizer, config={"steps": 3, "lr": 0.5})
    assert final == final_model_dir(tmp_path / "run") == tmp_path / "run" / "final"
    assert json.loads((final / "train_config.json").read_text()) == {"steps": 3, "lr": 0.5}
    loaded = AutoModelForCausalLM.from_pretrained(final)
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert torch.equal(p, q), name
    assert load_tokenizer(final).get_vocab() == tokenizer.get_vocab()
    # A second write replaces the first whole (no leftovers of the old one, no temp folders).
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    write_final_model(tmp_path / "run", model=model, tokenizer=tokenizer, config={"steps": 4})
    assert json.loads((final / "train_config.json").read_text()) == {"steps": 4}
    assert torch.equal(AutoModelForCausalLM.from_pretrained(final).lm_head.weight, model.lm_head.weight)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["final"]


def test_atomic_writes_follow_the_umask(tmp_path, tokenizer, umask_022):
    write_json_atomic(tmp_path / "summary.json", {"a": 1})
    write_text_atomic(tmp_path / "report.md", "# r\n")
    assert _mode(tmp_path / "summary.json") == 0o644
    assert _mode(tmp_path / "report.md") == 0o644
    model = build_tiny_model(TINY, len(tokenizer))
    step = save_checkpoint(tmp_path / "ckpt", 1, model=model, tokenizer=tokenizer)
    assert _mode(step) == 0o755 and _mode(step / "model") == 0o755
    assert _mode(step / "trainer_state.json") == 0o644 and _mode(tmp_path / "ckpt" / "latest") == 0o644
    final = write_final_model(tmp_path / "run", model=model, tokenizer=tokenizer, config={})
    assert _mode(final) == 0o755 and _mode(final / "train_config.json") == 0o644


def test_saving_a_model_prints_no_transformers_progress_bar(tmp_path, tokenizer, capfd):
    from transformers.utils import logging as hf_logging

    model = build_tiny_model(TINY, len(tokenizer))
    save_checkpoint(tmp_path / "ckpt", 1, model=model, tokenizer=tokenizer)
    write_final_model(tmp_path / "run", model=model, tokenizer=tokenizer, config={})
    assert "Writing model shards" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched off only while saving
