"""The SFT loop: fused loss equals full-logits CE, the LM head is never run, exact resume."""

import json

import pytest
import torch
import torch.nn.functional as F

import fastcomt.train.sft as sft
from fastcomt.comt.records import ComtRecord
from fastcomt.train.models import build_tiny_model
from fastcomt.train.packing import IGNORE_INDEX, collate_row, make_example

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def records_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "plans.jsonl"
    rows = []
    for i in range(8):
        a, b = i + 2, 2 * i + 1
        rows.append(
            ComtRecord(
                f"toy-{i}",
                "toy",
                "meta_thought",
                f"Ana has {a} pens and gets {b} more. How many?",
                "Steps:\n1. total = pens + more\nAnswer: total",
                float(a + b),
            ).to_dict()
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(records_path, out_dir, **optim):
    return {
        "output_dir": str(out_dir),
        "data": {"train": str(records_path), "shuffle": True},
        "tokenizer": {"kind": "number_word", "number_max": 20},
        "model": TINY,
        "optim": {"row_tokens": 64, "tokens_per_step": 64, "warmup_steps": 1, "lr": 1e-2, **optim},
        "progress": False,
        "save_every": 0,
    }


def test_fused_loss_and_grads_match_full_logits():
    model = build_tiny_model(TINY, 40)
    gen = torch.Generator().manual_seed(0)
    examples = [
        make_example(torch.randint(0, 40, (n,), generator=gen).tolist(), [i >= 2 for i in range(n)]) for n in (7, 11)
    ]
    loss = sft.packed_loss_sum(model, collate_row(examples))
    loss.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    # Reference: each example alone through the full model (its LM head), torch's cross-entropy.
    reference = sum(
        F.cross_entropy(
            model(input_ids=torch.tensor([ex.input_ids])).logits[0],
            torch.tensor(ex.targets),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        for ex in examples
    )
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    for fused, param in zip(fused_grads, model.parameters()):
        torch.testing.assert_close(fused, param.grad, rtol=1e-4, atol=1e-6)


def test_lm_head_is_never_called(records_path, tmp_path, monkeypatch):
    built = []

    def build_with_tripwire(*args, **kwargs):
        model = sft.build_model.__wrapped__(*args, **kwargs)

        def tripwire(module, inputs, output):
            raise AssertionError("the LM head ran: full-vocabulary logits were materialised")

        model.get_output_embeddings().register_forward_hook(tripwire)
        built.append(model)
        return model

    build_with_tripwire.__wrapped__ = sft.build_model
    monkeypatch.setattr(sft, "build_model", build_with_tripwire)
    summary = sft.run_sft({**_config(records_path, tmp_path / "run", max_steps=2), "loss": "fused"})
    assert summary["steps"] == 2 and built and summary["loss_head"] == "fused"
    with pytest.raises(AssertionError, match="LM head ran"):  # the tripwire itself works
        built[0](input_ids=torch.tensor([[1, 2]]))


def test_stopped_and_resumed_run_reaches_the_same_weights(records_path, tmp_path):
    straight = sft.run_sft(_config(records_path, tmp_path / "straight"))
    total = straight["total_steps"]
    assert total >= 3
    first = sft.run_sft(_config(records_path, tmp_path / "resumed"), stop_after_steps=2)
    assert first["interrupted"] and first["steps"] == 2
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "step_00000002" / "trainer_state.json").read_text())
    assert state["interrupted"] is True and state["step"] == 2
    second = sft.run_sft(_config(records_path, tmp_path / "resumed"))
    assert second["steps"] == total and not second["interrupted"]
    assert second["train_tokens"] == straight["train_tokens"]

    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "checkpoints" / f"step_{total:08d}" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoints" / f"step_{total:08d}" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise on CPU fp32
    losses = lambda run: [json.loads(line)["loss"] for line in open(tmp_path / run / "metrics.jsonl")]  # noqa: E731
    assert losses("resumed") == losses("straight")
    assert losses("straight")[-1] < losses("straight")[0]


def _random_examples(seed, shapes):
    """Examples of random ids over a 40-token vocabulary, one per (length, prompt length): the
    tokens from the prompt length on are the response."""
    gen = torch.Generator().manual_seed(seed)
    return [
        make_example(torch.randint(0, 40, (n,), generator=gen).tolist(), [i >= k for i in range(n)]) for n, k in shapes
    ]


def test_step_gradient_does_not_depend_on_how_rows_are_packed():
    # Gradient accumulation by token budget: the step's loss is the mean over all its response
    # tokens, whether the examples sit in one row or in three.
    model = build_tiny_model(TINY, 40)
    examples = _random_examples(1, ((5, 1), (12, 2), (9, 6)))
    grads = []
    for rows in ([collate_row(examples)], [collate_row([ex]) for ex in examples]):
        model.zero_grad()
        loss_sum, tokens = sft.accumulate_step_gradients(model, rows)
        assert tokens == sum(ex.num_loss_tokens for ex in examples) == 4 + 10 + 3
        grads.append([p.grad.clone() for p in model.parameters()])
    # Reference: one mean cross-entropy over all response tokens of all examples, full logits.
    model.zero_grad()
    logits = torch.cat([model(input_ids=torch.tensor([ex.input_ids])).logits[0] for ex in examples])
    targets = torch.tensor([t for ex in examples for t in ex.targets])
    F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX).backward()
    for packed, separate, param in zip(*grads, model.parameters()):
        torch.testing.assert_close(packed, param.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(separate, param.grad, rtol=1e-4, atol=1e-6)


def test_torch_loss_runs_the_head_on_the_trained_tokens_only():
    # `loss: torch` is the model's own head, but only the tokens with a target get logits: the same
    # loss and gradient as full logits over the whole row, without a prompt's logits.
    model = build_tiny_model(TINY, 40)
    examples = _random_examples(2, ((7, 4), (11, 9), (6, 1)))
    row = collate_row(examples)
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    model.zero_grad()
    loss = sft.full_logits_loss_sum(model, row)
    loss.backward()
    hook.remove()
    assert seen == [row.num_loss_tokens] == [3 + 2 + 5]
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(input_ids=row.input_ids, position_ids=row.position_ids).logits[0]
    expected = F.cross_entropy(logits, row.targets[0], ignore_index=IGNORE_INDEX, reduction="sum")
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for g, param in zip(got, model.parameters()):
        torch.testing.assert_close(g, param.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["torch", "chunked", "fused"])
def test_rows_per_forward_keeps_the_step_gradient(loss):
    """Rows stacked into one forward pass (optim.rows_per_forward), and padding passes with nothing
    to predict (FSDP's equal pass counts), leave the step's loss and gradient as they were."""
    model = build_tiny_model(TINY, 40)
    gen = torch.Generator().manual_seed(3)
    rows = [
        collate_row([make_example(torch.randint(0, 40, (n,), generator=gen).tolist(), [i >= 2 for i in range(n)])])
        for n in (5, 12, 9, 7)
    ]
    results = []
    for k in (1, 2, 3):
        model.zero_grad()
        loss_sum, tokens = sft.accumulate_step_gradients(
            model, rows, loss=loss, rows_per_forward=k, padding_rows=rows[:1]
        )
        assert tokens == sum(r.num_loss_tokens for r in rows)
        results.append((loss_sum, [p.grad.clone() for p in model.parameters()]))
    for loss_sum, grads in results[1:]:
        assert loss_sum == pytest.approx(results[0][0], rel=1e-5)
        for got, expected in zip(grads, results[0][1]):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="optim.rows_per_forward: expected a positive int"):
            sft.accumulate_step_gradients(model, rows, rows_per_forward=bad)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.train"):
        sft.run_sft(_config(tmp_path / "none.jsonl", tmp_path / "run"))


def test_torch_loss_gives_the_fused_loss_and_gradients():
    # `loss: torch` (full logits, the CPU path) and `loss: fused` (the kernel) train the same thing.
    model = build_tiny_model(TINY, 40)
    gen = torch.Generator().manual_seed(2)
    examples = [
        make_example(torch.randint(0, 40, (n,), generator=gen).tolist(), [i >= 3 for i in range(n)]) for n in (6, 10)
    ]
    row = collate_row(examples)
    results = {}
    for loss in ("fused", "torch", "chunked"):
        model.zero_grad()
        value = sft.row_loss_sum(model, row, loss)
        value.backward()
        results[loss] = (value.detach(), [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(results["torch"][0], results["fused"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results["chunked"][0], results["fused"][0], rtol=1e-5, atol=1e-5)
    for a, b, c in zip(results["torch"][1], results["fused"][1], results["chunked"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="loss: expected 'fused', 'chunked' or 'torch'"):
        sft.row_loss_sum(model, row, "liger")


def test_run_with_torch_loss_trains(records_path, tmp_path):
    summary = sft.run_sft({**_config(records_path, tmp_path / "run"), "loss": "torch"})
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert summary["steps"] == len(losses) >= 3 and losses[-1] < losses[0]


def test_config_rejects_an_unknown_loss(records_path, tmp_path):
    with pytest.raises(ValueError, match="loss"):
        sft.run_sft({**_config(records_path, tmp_path / "run"), "loss": "liger"})
