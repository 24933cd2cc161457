"""Benchmark readers: one `load_benchmark(name, split=...)` over the raw public files. Stdlib only.

Files are read where they lie (../shared/data beside the repository, or $FASTCOMT_DATA); nothing is
copied. Every reader returns `Problem` records with the gold answer as a float where it is numeric
and as the gold string otherwise (TabMWP multi-choice, ASDiv names/times/ratios), plus gold
intermediate values (`Problem.steps`) where the benchmark gives or implies them:

| name         | splits (default file)                                           | gold steps from |
|--------------|------------------------------------------------------------------|-----------------|
| gsm8k        | train, test, test_socratic (gsm8k/*.jsonl)                       | `<<expr=value>>` annotations |
| svamp        | test (svamp/SVAMP.json)                                          | `Equation`, one step per operation |
| asdiv        | test (all 2,305), asdiv-a (the arithmetic 1,218) (asdiv/ASDiv.xml)| `Formula` when it is plain arithmetic |
| mawps        | test (mawps/tora/test.jsonl), addsub, multiarith, singleeq, singleop | none |
| gsm_hard     | test (gsm_hard/gsmhardv2.jsonl)                                  | none |
| tabmwp       | test, dev (tabmwp/problems_{test,dev}1k.json)                    | arithmetic lines of `solution` that check out |
| gsm_symbolic | test = p2 (gsm_symbolic/GSM_p2.jsonl)                            | arithmetic lines of `answer` that check out |
| synthetic    | train, test (generated, seeds 0 and 1), or a JSONL file (path=)   | the generator's steps |

`path=` overrides the file: a local file in the same format (the ToRA re-packagings in the data folder
work too), or `"hf:<dataset>"` / `"hf:<dataset>:<config>"` to read a Hugging Face dataset of the same
benchmark through `datasets.load_dataset` (imported only then; it needs the dataset in the local
cache or network access). Known dataset ids: gsm8k `openai/gsm8k` (config `main`), svamp
`ChilleD/SVAMP`, asdiv `EleutherAI/asdiv`, gsm_hard `reasoning-machines/gsm-hard`,
gsm_symbolic `apple/GSM-Symbolic` (configs main, p1, p2); the readers accept their field names.

A malformed record raises RecordFormatError naming the file and line; with lenient=True it is skipped
and counted in the returned list's `skipped` (and `skipped_reasons`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..atomic_io import write_text_atomic
from ._records import RecordFormatError, iter_asdiv_xml, iter_json, iter_jsonl
from .answers import parse_number
from .arith import ArithmeticError_, binary_steps, evaluate
from .problem import Problem, Step
from .steps import find_steps
from .synthetic import synthetic_problems

__all__ = [
    "BENCHMARKS",
    "BenchmarkProblems",
    "RecordFormatError",
    "data_root",
    "load_benchmark",
    "save_problems",
    "load_problems",
]


class BenchmarkProblems(list):
    """A list of Problem with the count (and reasons) of malformed records skipped by lenient=True."""

    def __init__(self, problems: Iterable[Problem] = (), skipped_reasons: Iterable[str] = ()):
        super().__init__(problems)
        self.skipped_reasons: list[str] = list(skipped_reasons)

    @property
    def skipped(self) -> int:
        return len(self.skipped_reasons)


def data_root() -> Path:
    """$FASTCOMT_DATA when set, else ../shared/data beside the repository checkout."""
    env = os.environ.get("FASTCOMT_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


# --- per-benchmark record parsers: dict (file or HF row) -> Problem; raise _Bad on a broken record


class _Bad(Exception):
    """A record lacks a field or has an unreadable answer (becomes a RecordFormatError with its line)."""


def _field(rec: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in rec and rec[name] is not None:
            return rec[name]
    raise _Bad(f"missing field {' / '.join(repr(n) for n in names)}")


def _text(rec: Mapping[str, Any], *names: str) -> str:
    value = _field(rec, *names)
    if not isinstance(value, str):
        raise _Bad(f"field {names[0]!r}: expected a string, got {type(value).__name__}")
    return value


def _numeric_answer(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise _Bad(f"{what}: expected a number, got a bool")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        number = parse_number(value, strict=True)
        if number is not None:
            return number
    raise _Bad(f"{what}: expected a number, got {value!r}")


_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_FINAL = re.compile(r"####\s*(.*?)\s*$", re.DOTALL)


def _gsm_style(question: str, answer_text: str) -> tuple[float, tuple[Step, ...], str]:
    """GSM8K-format solution: the gold from the text after the last '####'; steps from <<a=b>>."""
    if "####" not in answer_text:
        raise _Bad("answer has no '#### <final answer>' line")
    final = answer_text.rsplit("####", 1)[1].strip()
    answer = _numeric_answer(final.replace(",", ""), "final answer after '####'")
    steps = []
    for m in _ANNOTATION.finditer(answer_text):
        expr, eq, value = m.group(1).rpartition("=")
        if not eq:
            continue
        number = parse_number(value, strict=True)
        # A few annotations are not numbers ("3/4=3/4" parses as 0.75, fine); skip only unreadable ones.
        if number is not None:
            steps.append(Step(value=number, expression=expr.strip()))
    solution = _ANNOTATION.sub("", answer_text)
    return answer, tuple(steps), solution


def _verified_steps(solution: str, question: str) -> tuple[Step, ...]:
    """Gold steps from a worked solution without annotations: equation results whose arithmetic checks."""
    return tuple(
        Step(value=s.value, expression=s.expression or "")
        for s in find_steps(solution, question, exclude_answer=True)
        if s.arithmetic_ok
    )


def _expression_steps(expression: str) -> tuple[Step, ...]:
    try:
        return tuple(Step(value=v, expression=e) for e, v in binary_steps(expression))
    except (ArithmeticError_, ZeroDivisionError):
        return ()


def _parse_gsm8k(rec: Mapping[str, Any], key: str) -> Problem:
    question = _text(rec, "question")
    answer, steps, solution = _gsm_style(question, _text(rec, "answer"))
    return Problem(id=key, question=question, answer=answer, steps=steps, source="gsm8k", solution=solution)


def _parse_svamp(rec: Mapping[str, Any], key: str) -> Problem:
    if "question_concat" in rec and rec["question_concat"]:
        question = _text(rec, "question_concat")
    else:
        body = _text(rec, "Body", "body").strip()
        ask = _text(rec, "Question", "question").strip()
        question = f"{body} {ask}" if body else ask
    answer = _numeric_answer(_field(rec, "Answer", "answer"), "Answer")
    equation = rec.get("Equation") or rec.get("equation") or ""
    steps = _expression_steps(equation) if isinstance(equation, str) else ()
    pid = str(rec.get("ID") or rec.get("id") or key)
    return Problem(id=pid, question=question, answer=answer, steps=steps, source="svamp", solution=equation or None)


_UNIT_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")


def _asdiv_answer(raw: str) -> float | str:
    """ASDiv answers: "9 (apples)" -> 9.0; several answers "a; b" stay a string; names/times stay text."""
    parts = [_UNIT_SUFFIX.sub("", p).strip() for p in raw.split(";")]
    parts = [p for p in parts if p]
    if not parts:
        raise _Bad(f"Answer: empty ({raw!r})")
    if len(parts) > 1:
        return "; ".join(parts)
    number = parse_number(parts[0], strict=True)
    return parts[0] if number is None else number


def _asdiv_formula_steps(formula: str) -> tuple[Step, ...]:
    # Only a plain "arithmetic=result" formula whose arithmetic checks out gives gold steps.
    lhs, eq, rhs = formula.partition("=")
    if not eq or "=" in rhs:
        return ()
    result = parse_number(rhs, strict=True)
    try:
        if result is None or abs(evaluate(lhs) - result) > 1e-6 * max(1.0, abs(result)):
            return ()
    except (ArithmeticError_, ZeroDivisionError):
        return ()
    return _expression_steps(lhs)


def _parse_asdiv(rec: Mapping[str, Any], key: str) -> Problem:
    body = _text(rec, "Body", "body").strip()
    ask = _text(rec, "Question", "question").strip()
    answer = _asdiv_answer(_text(rec, "Answer", "answer"))
    formula = rec.get("Formula") or rec.get("formula") or ""
    pid = str(rec.get("ID") or key)
    return Problem(
        id=pid,
        question=f"{body} {ask}",
        answer=answer,
        steps=_asdiv_formula_steps(formula) if isinstance(formula, str) else (),
        source="asdiv",
        solution=formula or None,
        family=rec.get("Solution-Type") or rec.get("solution_type"),
    )


def _parse_mawps(rec: Mapping[str, Any], key: str) -> Problem:
    question = _text(rec, "input", "question", "Question").strip()
    answer = _numeric_answer(_field(rec, "target", "answer", "Answer"), "target")
    return Problem(id=key, question=question, answer=answer, source="mawps", family=rec.get("type"))


def _parse_gsm_hard(rec: Mapping[str, Any], key: str) -> Problem:
    question = _text(rec, "input", "question")
    answer = _numeric_answer(_field(rec, "target", "answer"), "target")
    return Problem(id=key, question=question, answer=answer, source="gsm_hard", solution=rec.get("code"))


_NUMERIC_TYPES = frozenset({"integer_number", "decimal_number", "fraction_number"})


def _parse_tabmwp(rec: Mapping[str, Any], key: str) -> Problem:
    question = _text(rec, "question").strip()
    table = _text(rec, "table")
    title = rec.get("table_title")
    choices = rec.get("choices")
    unit = rec.get("unit")
    parts = []
    if title:
        parts.append(f"Table: {title}")
    parts.append(table.strip())
    parts.append("")
    parts.append(question + (f" (Unit: {unit})" if unit else ""))
    if choices:
        if not isinstance(choices, list):
            raise _Bad(f"choices: expected a list, got {type(choices).__name__}")
        parts.append("Choices: " + ", ".join(str(c) for c in choices))
    raw = _field(rec, "answer")
    if rec.get("ans_type") in _NUMERIC_TYPES or (not choices and isinstance(raw, int | float)):
        answer: float | str = _numeric_answer(raw, "answer")
    else:
        answer = str(raw).strip()
        if choices and answer not in [str(c).strip() for c in choices]:
            raise _Bad(f"answer {answer!r} is not one of the choices")
    solution = rec.get("solution") if isinstance(rec.get("solution"), str) else None
    full_question = "\n".join(parts)
    steps = _verified_steps(solution, full_question) if solution else ()
    return Problem(
        id=str(key),
        question=full_question,
        answer=answer,
        steps=steps,
        source="tabmwp",
        solution=solution,
        family=rec.get("ques_type"),
    )


def _parse_gsm_symbolic(rec: Mapping[str, Any], key: str) -> Problem:
    question = _text(rec, "question")
    answer_text = _text(rec, "answer")
    answer, steps, solution = _gsm_style(question, answer_text)
    if not steps:
        steps = _verified_steps(solution, question)
    if "id" in rec and "instance" in rec:
        key = f"gsm_symbolic-{rec['id']}-{rec['instance']}"
    return Problem(id=key, question=question, answer=answer, steps=steps, source="gsm_symbolic", solution=solution)


def _parse_synthetic(rec: Mapping[str, Any], key: str) -> Problem:
    return _problem_from_dict(rec)


_PARSERS: dict[str, Callable[[Mapping[str, Any], str], Problem]] = {
    "gsm8k": _parse_gsm8k,
    "svamp": _parse_svamp,
    "asdiv": _parse_asdiv,
    "mawps": _parse_mawps,
    "gsm_hard": _parse_gsm_hard,
    "tabmwp": _parse_tabmwp,
    "gsm_symbolic": _parse_gsm_symbolic,
    "synthetic": _parse_synthetic,
}

# name -> split -> file under the data root
_DEFAULT_FILES: dict[str, dict[str, str]] = {
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl", "test_socratic": "gsm8k/test_socratic.jsonl"},
    "svamp": {"test": "svamp/SVAMP.json"},
    "asdiv": {"test": "asdiv/ASDiv.xml", "asdiv-a": "asdiv/ASDiv.xml"},
    "mawps": {
        "test": "mawps/tora/test.jsonl",
        "addsub": "mawps/mawpsaddsub.jsonl",
        "multiarith": "mawps/mawpsmultiarith.jsonl",
        "singleeq": "mawps/mawpssingleeq.jsonl",
        "singleop": "mawps/mawpssingleop.jsonl",
    },
    "gsm_hard": {"test": "gsm_hard/gsmhardv2.jsonl"},
    "tabmwp": {"test": "tabmwp/problems_test1k.json", "dev": "tabmwp/problems_dev1k.json"},
    "gsm_symbolic": {"test": "gsm_symbolic/GSM_p2.jsonl", "p2": "gsm_symbolic/GSM_p2.jsonl"},
}
_SYNTHETIC_SPLITS = {"train": (0, 5000), "test": (1, 1000)}

BENCHMARKS: tuple[str, ...] = tuple(_PARSERS)


# --- file walking -----------------------------------------------------------------------------


def _records(path: Path) -> Iterator[tuple[int, str | None, Any]]:
    """(line, key, record or RecordFormatError) for a .jsonl, .json or ASDiv .xml file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for line, rec in iter_jsonl(path):
            yield line, None, rec
    elif suffix == ".json":
        yield from iter_json(path)
    elif suffix == ".xml":
        for line, rec in iter_asdiv_xml(path):
            yield line, None, rec
    else:
        raise ValueError(f"path: expected a .jsonl, .json or .xml file, got {path}")


def _asdiv_a_ids(root: Path) -> frozenset[str]:
    folder = root / "asdiv" / "nfolds" / "asdiv-a"
    ids: set[str] = set()
    for fold in sorted(folder.glob("fold*.txt")):
        ids.update(line.strip() for line in fold.read_text(encoding="utf-8").splitlines() if line.strip())
    if not ids:
        raise FileNotFoundError(f"asdiv-a fold files not found under {folder}")
    return frozenset(ids)


def _load_file(name: str, split: str, path: Path, lenient: bool, keep: frozenset[str] | None) -> BenchmarkProblems:
    parse = _PARSERS[name]
    problems: list[Problem] = []
    skipped: list[str] = []
    for index, (line, key, rec) in enumerate(_records(path)):
        try:
            if isinstance(rec, RecordFormatError):
                raise rec
            if not isinstance(rec, Mapping):
                raise RecordFormatError(path, line, f"expected a JSON object, got {type(rec).__name__}")
            try:
                problem = parse(rec, key if key is not None else f"{name}-{split}-{index}")
            except _Bad as e:
                raise RecordFormatError(path, line, str(e)) from None
        except RecordFormatError as e:
            if not lenient:
                raise
            skipped.append(str(e))
            continue
        if keep is None or problem.id in keep:
            problems.append(problem)
    return BenchmarkProblems(problems, skipped)


def _load_hf(name: str, split: str, spec: str, lenient: bool) -> BenchmarkProblems:
    try:
        import datasets  # noqa: PLC0415 - optional, heavy; only for hf: paths
    except ImportError as e:  # pragma: no cover - datasets is a declared dependency
        raise ImportError("path='hf:...' needs the `datasets` package") from e
    dataset_id, _, config = spec.partition(":")
    if not dataset_id:
        raise ValueError(f"path: expected 'hf:<dataset>[:<config>]', got 'hf:{spec}'")
    if not config and dataset_id == "openai/gsm8k":
        config = "main"
    hf_split = "test" if name == "gsm_symbolic" and split == "p2" else split
    rows = datasets.load_dataset(dataset_id, config or None, split=hf_split)
    parse = _PARSERS[name]
    problems, skipped = [], []
    for i, row in enumerate(rows):
        try:
            problems.append(parse(row, f"{name}-{split}-{i}"))
        except _Bad as e:
            err = RecordFormatError(f"hf:{spec}", i + 1, str(e))
            if not lenient:
                raise err from None
            skipped.append(str(err))
    return BenchmarkProblems(problems, skipped)


def load_benchmark(
    name: str, *, split: str = "test", path: str | os.PathLike[str] | None = None, lenient: bool = False
) -> BenchmarkProblems:
    """The problems of benchmark `name` (see BENCHMARKS and the module docstring for splits and paths)."""
    if name not in _PARSERS:
        raise ValueError(f"name: expected one of {BENCHMARKS}, got {name!r}")
    if not isinstance(split, str):
        raise TypeError(f"split: expected str, got {type(split).__name__}")
    if path is not None and str(path).startswith("hf:"):
        return _load_hf(name, split, str(path)[3:], lenient)
    if name == "synthetic" and path is None:
        if split not in _SYNTHETIC_SPLITS:
            raise ValueError(f"split: expected one of {tuple(_SYNTHETIC_SPLITS)} for synthetic, got {split!r}")
        seed, n = _SYNTHETIC_SPLITS[split]
        problems = synthetic_problems(n, seed=seed)
        if split == "test":  # keep test questions out of the default train split
            train_seed, train_n = _SYNTHETIC_SPLITS["train"]
            train_questions = {p.question for p in synthetic_problems(train_n, seed=train_seed)}
            problems = [p for p in problems if p.question not in train_questions]
        return BenchmarkProblems(problems)
    keep = None
    if path is None:
        files = _DEFAULT_FILES.get(name, {})
        if split not in files:
            raise ValueError(f"split: expected one of {tuple(files)} for {name}, got {split!r}")
        root = data_root()
        file = root / files[split]
        if name == "asdiv" and split == "asdiv-a":
            keep = _asdiv_a_ids(root)
    else:
        file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{name} {split}: file not found: {file} (set FASTCOMT_DATA or pass path=)")
    return _load_file(name, split, file, lenient, keep)


# --- our own JSONL form (synthetic and converted problems) -------------------------------------


def _problem_from_dict(rec: Mapping[str, Any]) -> Problem:
    try:
        steps = tuple(Step(**s) for s in rec.get("steps", ()))
        answer = rec["answer"]
        if not isinstance(answer, int | float | str) or isinstance(answer, bool):
            raise _Bad(f"answer: expected a number or string, got {type(answer).__name__}")
        return Problem(
            id=str(rec["id"]),
            question=rec["question"],
            answer=answer,
            steps=steps,
            source=rec.get("source", ""),
            solution=rec.get("solution"),
            quantities=dict(rec.get("quantities", {})),
            family=rec.get("family"),
        )
    except KeyError as e:
        raise _Bad(f"missing field {e.args[0]!r}") from None
    except TypeError as e:
        raise _Bad(f"bad step record ({e})") from None


def save_problems(problems: Iterable[Problem], path: str | os.PathLike[str]) -> None:
    """Write problems as JSONL atomically (temp file + os.replace), readable by load_problems."""
    lines = []
    for p in problems:
        if not isinstance(p, Problem):
            raise TypeError(f"problems: expected Problem records, got {type(p).__name__}")
        lines.append(json.dumps(asdict(p), ensure_ascii=False) + "\n")
    write_text_atomic(path, "".join(lines))


def load_problems(path: str | os.PathLike[str], *, lenient: bool = False) -> BenchmarkProblems:
    """Read a JSONL file written by save_problems."""
    return _load_file("synthetic", "file", Path(path), lenient, None)
