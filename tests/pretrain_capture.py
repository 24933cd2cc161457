"""A tiny stage-0 run that records every (ids, trained flags) example it builds, for the layout
tests (test_demo_pretrain_layout.py, test_pretrain_arithmetic.py)."""

from fastcomt_recipes.pretrain import run_pretrain

TINY_BASE = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32}


def pretrain_examples(tmp_path, monkeypatch, **settings):
    """(every example `make_example` was given, the run's summary) of a one-step run of the demo's
    layout (half the documents under their own question, worked solutions) with `settings` over it."""
    import fastcomt_recipes.pretrain as pretrain

    made = []
    original = pretrain.make_example

    def capture(ids, flags):
        made.append((list(ids), list(flags)))
        return original(ids, flags)

    monkeypatch.setattr(pretrain, "make_example", capture)
    config = {
        "output_dir": str(tmp_path / "base"),
        "tokenizer_problems": 16,
        "own_question_fraction": 0.5,
        "own_question_response": "cot",
        "progress": False,
        "model": TINY_BASE,
        "optim": {"max_steps": 1, "row_tokens": 512, "tokens_per_step": 512},
        **settings,
    }
    return made, run_pretrain(config)
