"""Benchmark readers over the real files in ../shared/data: counts, gold answers, gold steps, errors."""

import json
import sys
import types

import pytest

from fastcomt.tasks import (
    BENCHMARKS,
    RecordFormatError,
    answers_match,
    extract_answer,
    load_benchmark,
    load_problems,
    save_problems,
    synthetic_problems,
)

# (name, split) -> record count, from ../shared/data/README.md
EXPECTED_COUNTS = {
    ("gsm8k", "train"): 7473,
    ("gsm8k", "test"): 1319,
    ("gsm8k", "test_socratic"): 1319,
    ("svamp", "test"): 1000,
    ("asdiv", "test"): 2305,
    ("asdiv", "asdiv-a"): 1218,
    ("mawps", "test"): 2065,
    ("mawps", "addsub"): 395,
    ("mawps", "multiarith"): 600,
    ("mawps", "singleeq"): 508,
    ("mawps", "singleop"): 562,
    ("gsm_hard", "test"): 1319,
    ("tabmwp", "test"): 1000,
    ("tabmwp", "dev"): 1000,
    ("gsm_symbolic", "test"): 2500,
}


@pytest.fixture(autouse=True)
def _data_env(shared_data, monkeypatch):
    monkeypatch.setenv("FASTCOMT_DATA", str(shared_data))


@pytest.mark.parametrize("name,split", sorted(EXPECTED_COUNTS))
def test_record_counts(name, split):
    problems = load_benchmark(name, split=split)
    assert len(problems) == EXPECTED_COUNTS[(name, split)]
    assert problems.skipped == 0
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.source == name and p.question for p in problems)


def test_gsm8k_answers_and_annotation_steps():
    test = load_benchmark("gsm8k", split="test")
    first = test[0]
    assert first.answer == 18.0
    assert [(s.expression, s.value) for s in first.steps] == [("16-3-4", 9.0), ("9*2", 18.0)]
    assert "<<" not in first.solution and first.solution.endswith("#### 18")
    # README: 4,282 annotations in test, 23,716 in train; every one carries a readable value
    assert sum(len(p.steps) for p in test) == 4282
    assert sum(len(p.steps) for p in load_benchmark("gsm8k", split="train")) == 23716
    assert sum(bool(p.steps) for p in test) == 1301


def test_svamp_asdiv_gold_steps_from_expressions():
    svamp = {p.id: p for p in load_benchmark("svamp")}
    p = svamp["chal-1"]
    assert p.question.startswith("Each pack of dvds costs 76 dollars.") and p.question.endswith("each pack?")
    assert p.answer == 51.0 and [(s.expression, s.value) for s in p.steps] == [("76 - 25", 51.0)]
    asdiv = {p.id: p for p in load_benchmark("asdiv")}
    a = asdiv["nluds-0001"]
    assert a.answer == 9.0 and [(s.expression, s.value) for s in a.steps] == [("7 + 2", 9.0)]
    assert a.question == "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    multi = [p for p in asdiv.values() if isinstance(p.answer, str) and ";" in p.answer]
    assert len(multi) == 90  # the problems ToRA's copy leaves out
    assert any(p.answer == "Mrs. Hilt" for p in asdiv.values())


def test_tabmwp_question_carries_table_and_choices():
    problems = {p.id: p for p in load_benchmark("tabmwp")}
    p = problems["16"]
    assert "Braden | 76" in p.question and "What is the mean of the numbers?" in p.question
    assert p.answer == 84.0
    assert (672.0, "76 + 94 + 86 + 84 + 80 + 83 + 82 + 87") in [(s.value, s.expression) for s in p.steps]
    mc = problems["54"]
    assert mc.answer == "shortage" and "Choices: shortage, surplus" in mc.question
    assert sum(isinstance(p.answer, float) for p in problems.values()) == 751  # free_text numeric


def test_gsm_symbolic_and_gsm_hard():
    sym = load_benchmark("gsm_symbolic")
    assert sym[0].id == "gsm_symbolic-0-0" and sym[0].answer == 32.5
    assert 8.0 in [s.value for s in sym[0].steps]  # "16 - 16*1/2 =  8." checks out
    hard = load_benchmark("gsm_hard")
    assert sum(p.answer < 0 for p in hard) == 146
    assert sum(not float(p.answer).is_integer() for p in hard) == 303


def test_tora_copies_read_through_path(shared_data):
    default = load_benchmark("gsm8k", split="test")
    tora = load_benchmark("gsm8k", split="test", path=shared_data / "gsm8k/tora/test.jsonl")
    assert [p.answer for p in tora] == [p.answer for p in default]
    svamp = load_benchmark("svamp", path=shared_data / "svamp/tora/test.jsonl")
    assert {p.id: p.answer for p in svamp} == {p.id: p.answer for p in load_benchmark("svamp")}
    asdiv = load_benchmark("asdiv", path=shared_data / "asdiv/tora/test.jsonl")
    assert len(asdiv) == 2215 and asdiv[0].answer == 9.0
    hard = load_benchmark("gsm_hard", path=shared_data / "gsm_hard/tora/test.jsonl")
    assert [p.answer for p in hard] == [p.answer for p in load_benchmark("gsm_hard")]


NUMERIC_FILES = [
    ("gsm8k", "train"),
    ("gsm8k", "test"),
    ("gsm8k", "test_socratic"),
    ("svamp", "test"),
    ("asdiv", "asdiv-a"),
    ("mawps", "test"),
    ("gsm_hard", "test"),
    ("gsm_symbolic", "test"),
]


@pytest.mark.parametrize("name,split", NUMERIC_FILES)
def test_parse_rate_numeric_files_is_total(name, split):
    """Every gold answer is numeric, and stated the usual ways it is extracted and matched."""
    problems = load_benchmark(name, split=split)
    numeric = [p for p in problems if isinstance(p.answer, float)]
    print(f"{name}/{split}: numeric gold answers {len(numeric)}/{len(problems)}")
    assert len(numeric) == len(problems)
    for p in problems:
        g = p.answer
        written = f"{g:,.0f}" if float(g).is_integer() else repr(g)
        for text in (f"So the total is 12.\nThe answer is {written}.", f"... \\boxed{{{written}}}", f"#### {written}"):
            assert answers_match(extract_answer(text), g), (p.id, text)
        if p.solution and "####" in p.solution:
            assert answers_match(extract_answer(p.solution), g), p.id  # the gold solution itself


@pytest.mark.parametrize("name,split", [("tabmwp", "test"), ("tabmwp", "dev"), ("asdiv", "test")])
def test_parse_rate_mixed_files(name, split):
    problems = load_benchmark(name, split=split)
    rate = sum(answers_match(extract_answer(f"The answer is {p.answer}."), p.answer) for p in problems) / len(problems)
    print(f"{name}/{split}: answer round-trip {rate:.4f}")
    assert rate == 1.0


def test_tabmwp_solution_texts_fallback_rate():
    """TabMWP solutions state no "answer is"; the last-number fallback recovers most numeric golds."""
    problems = [p for p in load_benchmark("tabmwp") if isinstance(p.answer, float)]
    rate = sum(answers_match(extract_answer(p.solution), p.answer) for p in problems) / len(problems)
    print(f"tabmwp/test: gold solution -> last-number fallback {rate:.3f}")
    assert 0.6 < rate < 1.0  # informative: e.g. "4 parking lots had exactly 44 cars." ends on 44


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_jsonl_names_file_and_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "2+2=<<2+2=4>>4\n#### 4"})
    path = _write(
        tmp_path, "bad.jsonl", f"{good}\n{{not json\n{json.dumps({'question': 'q', 'answer': 'no final'})}\n{good}\n"
    )
    with pytest.raises(RecordFormatError, match=r"bad\.jsonl:2: not valid JSON"):
        load_benchmark("gsm8k", path=path)
    problems = load_benchmark("gsm8k", path=path, lenient=True)
    assert len(problems) == 2 and problems.skipped == 2
    assert "bad.jsonl:3:" in problems.skipped_reasons[1] and "####" in problems.skipped_reasons[1]


def test_malformed_json_array_and_xml(tmp_path):
    rec = {"ID": "a", "Body": "b", "Question": "q", "Equation": "( 1.0 + 1.0 )", "Answer": 2.0}
    bad = dict(rec, ID="b", Answer="two")
    path = _write(tmp_path, "svamp.json", "[\n" + json.dumps(rec) + ",\n" + json.dumps(bad) + "\n]")
    with pytest.raises(RecordFormatError, match=r"svamp\.json:3: Answer: expected a number"):
        load_benchmark("svamp", path=path)
    assert load_benchmark("svamp", path=path, lenient=True).skipped == 1
    xml = _write(tmp_path, "a.xml", "<P>\n<Problem ID='x'><Body>b</Body>\n<Answer>1</Answer>\n</P>")
    with pytest.raises(RecordFormatError, match=r"a\.xml:4: not well-formed"):
        load_benchmark("asdiv", path=xml)


def test_data_env_override(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    _write(tmp_path / "gsm8k", "test.jsonl", json.dumps({"question": "q?", "answer": "1+1=<<1+1=2>>2\n#### 2"}) + "\n")
    monkeypatch.setenv("FASTCOMT_DATA", str(tmp_path))
    problems = load_benchmark("gsm8k")
    assert len(problems) == 1 and problems[0].answer == 2.0


def test_hf_path_uses_datasets_lazily(monkeypatch):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return [{"question": "Q", "answer": "3*2=<<3*2=6>>6\n#### 6"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    problems = load_benchmark("gsm8k", split="train", path="hf:openai/gsm8k")
    assert calls == [("openai/gsm8k", "main", "train")]
    assert problems[0].answer == 6.0 and problems[0].steps[0].value == 6.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="name"):
        load_benchmark("gsm9k")
    with pytest.raises(ValueError, match="split"):
        load_benchmark("svamp", split="train")
    assert set(BENCHMARKS) >= {"gsm8k", "svamp", "asdiv", "mawps", "gsm_hard", "tabmwp", "gsm_symbolic", "synthetic"}


def test_synthetic_splits_and_file_roundtrip(tmp_path):
    train = load_benchmark("synthetic", split="train")
    test = load_benchmark("synthetic", split="test")
    assert not {p.question for p in train} & {p.question for p in test}
    problems = synthetic_problems(20, seed=5)
    path = tmp_path / "out" / "synthetic.jsonl"
    save_problems(problems, path)
    assert load_problems(path) == problems
    assert load_benchmark("synthetic", path=path) == problems
