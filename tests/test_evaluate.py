"""Benchmark evaluation: hand-computed accuracy and calibration, resume after a crash, report, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastcomt import formats as F
from fastcomt.comt.cot import cot_target
from fastcomt.comt.offline import offline_meta_thought
from fastcomt.eval import add_eval_arguments, evaluate, render_report, run_eval_from_args, summarize_rows
from fastcomt.eval.cli_args import eval_config_from_args
from fastcomt.eval.runner import load_rows
from fastcomt.eval.runner import main as eval_main
from fastcomt.rollout import GroupResult, RolloutEngine, Sample, TransformersEngine
from fastcomt.tasks import Problem, load_benchmark, synthetic_problems
from fastcomt.tokenizer import train_tokenizer

SYN_P = [0.95, 0.85, 0.75, 0.65, 0.55, 0.45]  # per synthetic problem: every execution token's probability
GSM_P = [0.92, 0.81, 0.72]


@pytest.fixture(scope="module")
def synthetic() -> list[Problem]:
    return synthetic_problems(6, seed=1)


@pytest.fixture(scope="module")
def gsm8k() -> list[Problem]:
    return list(load_benchmark("gsm8k")[:3])


def gold_plan(p: Problem) -> str:
    return offline_meta_thought(p).render()


def gold_execution(p: Problem) -> str:
    return p.solution if p.source == "synthetic" else cot_target(p)


@pytest.fixture(scope="module")
def tokenizer(synthetic, gsm8k):
    texts = [p.question for p in synthetic + gsm8k]
    texts += [F.render_response("comt", gold_execution(p), gold_plan(p)) for p in synthetic + gsm8k]
    return train_tokenizer(texts, kind="number_word", number_max=1000, vocab_size=4096)


class GoldEngine(RolloutEngine):
    """Answers with a problem's gold plan (plan stage) or gold execution, then the end-of-turn token.

    Every execution token gets log-prob log(p) of its problem, except tokens overlapping `marked`
    character spans of the execution text, which get log(0.95). Asserts that executions continue
    exactly [prompt + plan + marker] (comt) or the prompt (cot).
    """

    def __init__(self, tokenizer, fmt, problems, probs, executions=None, marked=None):
        self.tok, self.fmt, self.calls = tokenizer, fmt, []
        self.eot = tokenizer.convert_tokens_to_ids("<|end|>")
        marker = tuple(F.marker_ids(tokenizer))
        self.plans, self.execs = {}, {}
        for p, prob in zip(problems, probs):
            prompt = tuple(F.prompt_ids(tokenizer, p.question))
            text = (executions or {}).get(p.id, gold_execution(p))
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            spans = (marked or {}).get(p.id, [])
            logprobs = [
                math.log(0.95) if any(a < e and s < b for s, e in spans) else math.log(prob)
                for a, b in enc["offset_mapping"]
            ]
            execution = (tuple(enc["input_ids"]) + (self.eot,), tuple(logprobs) + (-0.01,))
            if fmt == "comt":
                plan = tuple(F.text_ids(tokenizer, gold_plan(p)))
                self.plans[prompt] = plan + (self.eot,)
                self.execs[prompt + plan + marker] = execution
            else:
                self.execs[prompt] = execution

    @property
    def weight_version(self):
        return 0

    def generate(self, groups):
        self.calls.append([g.request_id for g in groups])
        out = []
        for g in groups:
            if self.fmt == "comt" and g.prefix_ids in self.plans:
                ids = self.plans[g.prefix_ids]
                lps = (-0.05,) * len(ids)
            else:
                ids, lps = self.execs[g.prefix_ids]  # KeyError: the prefix is not prompt + plan + marker
            out.append(GroupResult(g, tuple(Sample(ids, lps, "stop", 0, 0, s) for s in g.seeds)))
        return out

    def update_weights(self, weights, version):
        raise NotImplementedError

    def flush_cache(self):
        pass

    def close(self):
        pass


def _rows_file(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / "rows" / f"{name}.jsonl").read_text().splitlines()]


def test_gold_responses_score_perfectly_with_hand_calibration(tmp_path, tokenizer, synthetic, gsm8k):
    engine = GoldEngine(tokenizer, "comt", synthetic + gsm8k, SYN_P + GSM_P)
    summary = evaluate(
        engine, tokenizer, {"synthetic": synthetic, "gsm8k": gsm8k}, fmt="comt", out_dir=tmp_path, batch_size=4
    )
    assert len(engine.calls) == 2 * (2 + 1)  # batches of 4: two for synthetic, one for gsm8k; two stages each

    for name, problems, probs in (("synthetic", synthetic, SYN_P), ("gsm8k", gsm8k, GSM_P)):
        rows = _rows_file(tmp_path, name)
        assert [r["id"] for r in rows] == [p.id for p in problems]
        assert all(r["correct"] and r["format_ok"] for r in rows), [r["format_reasons"] for r in rows]
        # every gold intermediate value is found as a step, right, with its problem's probability
        for r, p, prob in zip(rows, problems, probs):
            assert [s["value"] for s in r["steps"]] == [float(s.value) for s in p.steps]
            assert all(s["correct"] == 1 and s["source"] == "gold" for s in r["steps"])
            assert all(math.isclose(s["confidence"], prob, rel_tol=1e-6) for s in r["steps"])
            plan_ids = F.text_ids(tokenizer, gold_plan(p))
            exec_ids = tokenizer(gold_execution(p), add_special_tokens=False)["input_ids"]
            assert r["response_tokens"] == len(plan_ids) + len(F.marker_ids(tokenizer)) + len(exec_ids) + 1
        k = [len(p.steps) for p in problems]
        m = summary["benchmarks"][name]
        # all steps right: every bin's accuracy is 1, so ECE = mean(1 - confidence) whatever the binning
        ece = sum(ki * (1 - pi) for ki, pi in zip(k, probs)) / sum(k)
        brier = sum(ki * (1 - pi) ** 2 for ki, pi in zip(k, probs)) / sum(k)
        assert (m["n"], m["accuracy"], m["format_rate"], m["steps"]) == (len(problems), 1.0, 1.0, sum(k))
        assert m["ece"] == pytest.approx(ece) and m["ece_mass"] == pytest.approx(ece)
        assert m["brier"] == pytest.approx(brier)
        assert m["overconfident_error_rate"] == 0.0 and m["auroc"] is None  # no wrong step: undefined
    groups = summary["groups"]
    assert groups["in_distribution"]["benchmarks"] == ["gsm8k"] and groups["out_of_distribution"]["benchmarks"] == []
    assert groups["in_distribution"]["ece"] == summary["benchmarks"]["gsm8k"]["ece"]
    per = summary["benchmarks"]
    assert groups["overall"]["ece"] == pytest.approx((per["synthetic"]["ece"] + per["gsm8k"]["ece"]) / 2)
    assert json.loads((tmp_path / "summary.json").read_text())["groups"]["overall"]["accuracy"] == 1.0
    assert (tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![reliability diagram](reliability.png)" in (tmp_path / "report.md").read_text()


def test_wrong_confident_steps_hand_calibration(tmp_path, tokenizer, synthetic):
    # The first line's result is written one too high (the later lines and the answer stay right),
    # with probability 0.95: six confidently wrong steps among right ones at SYN_P.
    executions, marked = {}, {}
    for p in synthetic:
        first, rest = p.solution.split("\n", 1)
        gold = {float(s.value) for s in p.steps}
        wrong = int(p.steps[0].value) + 1
        while wrong in gold:
            wrong += 1
        head = first.rsplit("= ", 1)[0] + "= "
        executions[p.id] = f"{head}{wrong}\n{rest}"
        marked[p.id] = [(len(head), len(head) + len(str(wrong)))]
    probs = [0.35, 0.85, 0.75, 0.65, 0.55, 0.45]  # one bin each, none in the wrong steps' bin
    engine = GoldEngine(tokenizer, "cot", synthetic, probs, executions, marked)
    summary = evaluate(engine, tokenizer, {"synthetic": synthetic}, fmt="cot", out_dir=tmp_path, batch_size=6)
    m = summary["benchmarks"]["synthetic"]
    k = [len(p.steps) for p in synthetic]
    n = sum(k)
    # equal-width bins: each of `probs` sits alone in its bin (all right); 0.95 holds the six wrong ones
    ece = (6 * 0.95 + sum((ki - 1) * (1 - pi) for ki, pi in zip(k, probs))) / n
    brier = (6 * 0.95**2 + sum((ki - 1) * (1 - pi) ** 2 for ki, pi in zip(k, probs))) / n
    assert m["accuracy"] == 1.0 and m["steps"] == n
    assert m["step_accuracy"] == pytest.approx((n - 6) / n)
    assert m["ece"] == pytest.approx(ece) and m["brier"] == pytest.approx(brier)
    assert m["overconfident_error_rate"] == pytest.approx(6 / n)
    assert m["auroc"] == 0.0  # every wrong step is more confident than every right one
    assert m["mean_plan_tokens"] == 0.0


# --- resume with a real tiny model ----------------------------------------------------------------


class CountingEngine(RolloutEngine):
    """Wraps an engine: records every group's request id, and raises on call number `crash_at`."""

    def __init__(self, inner: RolloutEngine, crash_at: int | None = None):
        self.inner, self.crash_at, self.calls = inner, crash_at, []

    @property
    def weight_version(self):
        return self.inner.weight_version

    def generate(self, groups):
        if self.crash_at is not None and len(self.calls) + 1 == self.crash_at:
            raise RuntimeError("simulated crash")
        self.calls.append([g.request_id for g in groups])
        return self.inner.generate(groups)

    def update_weights(self, weights, version):
        self.inner.update_weights(weights, version)

    def flush_cache(self):
        self.inner.flush_cache()

    def close(self):
        pass


def _tiny_model(vocab: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,
    )
    return Qwen2ForCausalLM(config).eval()


def _hand_ece(conf, correct, n_bins=10):
    total = 0.0
    for b in range(n_bins):
        members = [(c, z) for c, z in zip(conf, correct) if min(int(c * n_bins), n_bins - 1) == b]
        if members:
            acc = sum(z for _, z in members) / len(members)
            mean_c = sum(c for c, _ in members) / len(members)
            total += len(members) / len(conf) * abs(acc - mean_c)
    return total


def test_resume_after_crash_skips_finished_problems(tmp_path, tokenizer, synthetic, gsm8k):
    inner = TransformersEngine(_tiny_model(len(tokenizer)))
    benchmarks = {"synthetic": synthetic, "gsm8k": gsm8k}
    kwargs = dict(fmt="comt", out_dir=tmp_path, batch_size=2, max_new_tokens=6)

    crashing = CountingEngine(inner, crash_at=4)  # call 3 plans the second batch; its executions crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(crashing, tokenizer, benchmarks, **kwargs)
    rows_file = tmp_path / "rows" / "synthetic.jsonl"
    first_bytes = rows_file.read_bytes()
    assert [r["id"] for r in _rows_file(tmp_path, "synthetic")] == [p.id for p in synthetic[:2]]
    assert not (tmp_path / "summary.json").exists()
    with open(rows_file, "a") as f:  # a write torn by the crash
        f.write('{"id": "' + synthetic[2].id + '", "benchm')

    resumed = CountingEngine(inner)
    summary = evaluate(resumed, tokenizer, benchmarks, **kwargs)
    planned = [rid.split("/")[0] for call in resumed.calls for rid in call if rid.endswith("/plans")]
    assert planned == [p.id for p in synthetic[2:] + gsm8k]  # finished problems are not recomputed
    assert len(resumed.calls) == 2 * (2 + 2)
    assert rows_file.read_bytes().startswith(first_bytes)

    for name, problems in benchmarks.items():
        rows = load_rows(tmp_path, name)
        assert [r["id"] for r in rows] == [p.id for p in problems]
        m = summary["benchmarks"][name]
        assert m["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
        assert m["format_rate"] == pytest.approx(sum(r["format_ok"] for r in rows) / len(rows))
        assert m["mean_response_tokens"] == pytest.approx(sum(r["response_tokens"] for r in rows) / len(rows))
        conf = [s["confidence"] for r in rows for s in r["steps"]]
        correct = [s["correct"] for r in rows for s in r["steps"]]
        assert m["steps"] == len(conf)
        if conf:
            assert m["ece"] == pytest.approx(_hand_ece(conf, correct))
            assert m["brier"] == pytest.approx(sum((c - z) ** 2 for c, z in zip(conf, correct)) / len(conf))
        for r in rows:  # the execution's token budget bounds what was sampled
            assert r["execution_tokens"] <= 6 and r["plan_tokens"] <= 6

    again = CountingEngine(inner)
    assert evaluate(again, tokenizer, benchmarks, **kwargs) == summary and again.calls == []
    # a smaller limit reports the first problems from the rows already there
    small = evaluate(again, tokenizer, benchmarks, limit=1, **kwargs)
    assert again.calls == [] and small["benchmarks"]["gsm8k"]["n"] == 1

    with pytest.raises(ValueError, match="other settings"):
        evaluate(again, tokenizer, benchmarks, **{**kwargs, "fmt": "cot"})


def test_bad_arguments(tmp_path, tokenizer, synthetic):
    engine = GoldEngine(tokenizer, "cot", synthetic, SYN_P)
    with pytest.raises(ValueError, match="fmt"):
        evaluate(engine, tokenizer, {"synthetic": synthetic}, fmt="plan", out_dir=tmp_path)
    with pytest.raises(ValueError, match="limit"):
        evaluate(engine, tokenizer, {"synthetic": synthetic}, fmt="cot", out_dir=tmp_path, limit=-1)
    with pytest.raises(TypeError, match="benchmarks"):
        evaluate(engine, tokenizer, "gsm8k", fmt="cot", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unique"):
        evaluate(engine, tokenizer, {"synthetic": synthetic[:1] * 2}, fmt="cot", out_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(engine, tokenizer, {"synthetic": synthetic}, fmt="cot", out_dir=tmp_path, batch_size=0)
    with pytest.raises(TypeError, match="engine"):
        evaluate(object(), tokenizer, {"synthetic": synthetic}, fmt="cot", out_dir=tmp_path)


# --- report layout ------------------------------------------------------------------------------


def _row(correct: bool, conf: float, right: int) -> dict:
    return {
        "correct": correct,
        "format_ok": True,
        "finish_reason": "stop",
        "response_tokens": 10,
        "plan_tokens": 4,
        "execution_tokens": 5,
        "generated_tokens": 9,
        "steps": [{"confidence": conf, "correct": right}],
    }


def test_report_follows_the_paper_layout():
    names = ["synthetic", "gsm_symbolic", "gsm_hard", "tabmwp", "mawps", "asdiv", "svamp", "gsm8k"]
    accuracy = {
        "gsm8k": 0.5,
        "svamp": 1.0,
        "asdiv": 0.0,
        "mawps": 0.5,
        "tabmwp": 1.0,
        "gsm_hard": 0.5,
        "gsm_symbolic": 0.5,
        "synthetic": 1.0,
    }
    rows = {
        n: [_row(True, 0.9, 1), _row(accuracy[n] == 1.0, 0.6, 0)]
        if accuracy[n] >= 0.5
        else [_row(False, 0.9, 1), _row(False, 0.6, 0)]
        for n in names
    }
    summary = summarize_rows(rows)
    groups = summary["groups"]
    assert groups["in_distribution"]["accuracy"] == pytest.approx(0.75)
    assert groups["out_of_distribution"]["accuracy"] == pytest.approx((0.0 + 0.5 + 1.0 + 0.5 + 0.5) / 5)
    assert groups["overall"]["accuracy"] == pytest.approx(sum(accuracy.values()) / 8)
    assert groups["overall"]["n"] == 16
    # one right step at 0.9, one wrong at 0.6 per benchmark: ECE = (0.1 + 0.6) / 2
    assert summary["benchmarks"]["gsm8k"]["ece"] == pytest.approx(0.35)
    assert summary["steps_pooled"]["steps"] == 16
    text = render_report({**summary, "settings": {"fmt": "comt", "confidence": "geomean"}})
    header = next(line for line in text.splitlines() if line.startswith("| metric"))
    assert header == (
        "| metric | GSM8K | SVAMP | **ID avg** | ASDiv | MAWPS | TabMWP | GSM-Hard | GSM-Symbolic | "
        "**OOD avg** | Synthetic | **Overall** |"
    )
    accuracy_row = next(line for line in text.splitlines() if line.startswith("| Lenient accuracy"))
    assert (
        accuracy_row
        == "| Lenient accuracy (%) | 50.0 | 100.0 | 75.0 | 0.0 | 50.0 | 100.0 | 50.0 | 50.0 | 50.0 | 100.0 | 62.5 |"
    )
    # every row here states its answer in the expected format: strict equals lenient, and comes first
    strict_row = next(line for line in text.splitlines() if "accuracy (%)" in line)
    assert (
        strict_row
        == "| Strict accuracy (%) | 50.0 | 100.0 | 75.0 | 0.0 | 50.0 | 100.0 | 50.0 | 50.0 | 50.0 | 100.0 | 62.5 |"
    )


# --- command line -------------------------------------------------------------------------------


def test_cli_arguments_end_to_end(tmp_path, tokenizer):
    model_dir = tmp_path / "model"
    _tiny_model(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (tmp_path / "eval.yaml").write_text("limit: 5\nbatch_size: 3\nseed: 7\n")
    parser = add_eval_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        [
            "--config",
            str(tmp_path / "eval.yaml"),
            "--model",
            str(model_dir),
            "--benchmarks",
            "gsm8k,svamp",
            "--limit",
            "1",
            "--format",
            "cot",
            "--out",
            str(tmp_path / "out"),
            "--max-new-tokens",
            "4",
            "progress=false",
            "seed=3",
        ]
    )
    config = eval_config_from_args(args)
    # flags beat overrides, overrides beat the file, the file beats the defaults
    assert (config.limit, config.batch_size, config.seed, config.benchmarks) == (1, 3, 3, ["gsm8k", "svamp"])
    assert run_eval_from_args(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["benchmarks"]) == ["gsm8k", "svamp"]
    assert summary["groups"]["in_distribution"]["n"] == 2
    assert summary["settings"]["fmt"] == "cot" and summary["settings"]["model"] == str(model_dir.resolve())
    assert len(load_rows(tmp_path / "out", "svamp")) == 1
    # the config-file entry with the same settings resumes the finished run: no new rows
    same = [
        f"model={model_dir}",
        "benchmarks=[gsm8k, svamp]",
        "limit=1",
        "format=cot",
        f"out_dir={tmp_path / 'out'}",
        "max_new_tokens=4",
        "seed=3",
        "progress=false",
    ]
    assert eval_main(str(tmp_path / "eval.yaml"), same) == 0
    assert len(load_rows(tmp_path / "out", "svamp")) == 1
    with pytest.raises(ValueError, match="other settings"):
        eval_main(str(tmp_path / "eval.yaml"), same[:-2] + ["seed=4", "progress=false"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--format", "tree"])
