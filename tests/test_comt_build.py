"""Building data sets: offline, CoT and teacher modes, the record format, reports, and resuming."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fastcomt.comt.build import ComtDataConfig, build_comt_data, data_paths
from fastcomt.comt.records import ComtRecord, read_records
from fastcomt.comt.teacher import PROMPT_VERSION
from fastcomt.tasks import synthetic_problems


def _lines(path):
    return [json.loads(line) for line in open(path)]


def test_offline_build_record_format_and_resume(tmp_path):
    out = tmp_path / "synthetic_comt.jsonl"
    cfg = {"source": "synthetic", "mode": "offline", "num_problems": 12, "seed": 5, "output": str(out)}
    report = build_comt_data(cfg)
    assert (report["kept_total"], report["rejected_total"], report["new_kept"]) == (12, 0, 12)
    rows = _lines(out)
    problems = synthetic_problems(12, seed=5)
    assert [r["id"] for r in rows] == [p.id for p in problems]
    first = rows[0]
    assert set(first) == {"id", "source", "kind", "question", "target", "answer", "provenance"}
    assert first["kind"] == "meta_thought" and first["answer"] == problems[0].answer
    assert first["provenance"]["mode"] == "offline"
    assert all(v["passed"] for v in first["provenance"]["filters"].values())
    assert json.load(open(data_paths(out)[2]))["kept_total"] == 12  # the report is written beside the data

    # Crash simulation: two records lost and the last line torn mid-write.
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:9]) + text[9][:25])
    again = build_comt_data(cfg)
    assert (again["skipped_existing"], again["new_kept"], again["kept_total"]) == (9, 3, 12)
    assert _lines(out) == rows  # same records, same order, no torn line left
    assert build_comt_data(cfg)["new_kept"] == 0


def test_cot_build_gsm8k_limit(tmp_path, shared_data):
    out = tmp_path / "gsm8k_cot.jsonl"
    report = build_comt_data({"source": "gsm8k", "split": "train", "mode": "cot", "limit": 5, "output": str(out)})
    assert report["kept_total"] == 5
    records = read_records(out)
    assert records[0].kind == "cot" and "<<" not in records[0].target
    assert records[0].target.endswith("The answer is 72.")


class ScriptedTeacher:
    """A teacher whose reply depends on the problem index: good, leaking, wrong, or unparsable."""

    def __init__(self, problems):
        self.by_question = {p.question: (i, p) for i, p in enumerate(problems)}
        self.calls = 0

    def reply(self, problem, kind):
        variables = "\n".join(f"{k} = {v}" for k, v in problem.quantities.items())
        steps = "\n".join(f"{i}. Compute {s.name} = {s.symbolic}." for i, s in enumerate(problem.steps, start=1))
        last = problem.steps[-1].name
        if kind == "leak":
            steps += f"\n{len(problem.steps) + 1}. Check that {last} is 987654."
        answer = f"{last} + 1" if kind == "wrong" else last
        if kind == "garbage":
            return "I am not able to describe this."
        return f"Variables:\n{variables}\nSteps:\n{steps}\nAnswer: {answer}"

    def complete_many(self, list_of_messages, **params):
        assert params == {"temperature": 0.0, "max_tokens": 512}
        replies = []
        for messages in list_of_messages:
            self.calls += 1
            question = messages[-1]["content"].split("Problem:\n", 1)[1].split("\n\nSolution:", 1)[0]
            i, problem = self.by_question[question]
            replies.append(self.reply(problem, ("good", "leak", "wrong", "garbage")[i % 4]))
        return replies


def test_teacher_mode_filters_counts_and_resume(tmp_path):
    problems = synthetic_problems(8, seed=11)
    out = tmp_path / "teacher.jsonl"
    cfg = ComtDataConfig(output=str(out), source="synthetic", mode="teacher", num_problems=8, seed=11)
    cfg.teacher.model = "scripted"
    cfg.teacher.batch_size = 3
    teacher = ScriptedTeacher(problems)
    report = build_comt_data(cfg, client=teacher)
    assert (report["kept_total"], report["rejected_total"]) == (2, 6)
    assert report["filter_failures"] == {"consistency": 2, "leak": 2, "parse": 2}
    kept = read_records(out)
    assert [r.id for r in kept] == [problems[0].id, problems[4].id]
    assert kept[0].provenance["teacher_model"] == "scripted"
    assert kept[0].provenance["prompt_version"] == PROMPT_VERSION
    assert "Variables:" in kept[0].provenance["raw_reply"] and kept[0].target.startswith("Variables:\n")
    rejected = _lines(data_paths(out)[1])
    assert rejected[0]["provenance"]["filters"]["leak"]["passed"] is False

    # A rerun asks the teacher only for what is not in either file.
    lost = out.read_text().splitlines(keepends=True)[:1]
    out.write_text("".join(lost))
    calls_before = teacher.calls
    again = build_comt_data(cfg, client=teacher)
    assert teacher.calls - calls_before == 1 and again["kept_total"] == 2


class _ChatHandler(BaseHTTPRequestHandler):
    """/v1/chat/completions answering a fixed meta-thought for the shopping problem."""

    reply = ""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["model"] == "tiny-teacher" and body["temperature"] == 0.0
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": self.reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_teacher_mode_through_the_http_client(tmp_path):
    problem = synthetic_problems(1, seed=0)[0]
    _ChatHandler.reply = ScriptedTeacher([problem]).reply(problem, "good")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = {
            "output": str(tmp_path / "t.jsonl"),
            "mode": "teacher",
            "num_problems": 1,
            "teacher": {
                "base_url": f"http://127.0.0.1:{server.server_address[1]}",
                "model": "tiny-teacher",
                "cache_dir": str(tmp_path / "cache"),
                "max_retries": 0,
            },
        }
        report = build_comt_data(cfg)
    finally:
        server.shutdown()
        server.server_close()
    assert report["kept_total"] == 1
    assert ComtRecord.from_dict(_lines(tmp_path / "t.jsonl")[0]).provenance["teacher_model"] == "tiny-teacher"


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="output: required"):
        build_comt_data({"mode": "offline"})
    with pytest.raises(ValueError, match="mode: expected one of"):
        build_comt_data({"output": str(tmp_path / "x.jsonl"), "mode": "magic"})
    with pytest.raises(ValueError, match="teacher.model"):
        build_comt_data({"output": str(tmp_path / "x.jsonl"), "mode": "teacher"})
    with pytest.raises(ValueError, match=r"filters.max_steps: expected int"):
        build_comt_data({"output": str(tmp_path / "x.jsonl"), "filters": {"max_steps": "many"}})
