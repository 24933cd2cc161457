"""The response formats the model is trained and evaluated in, and their two generation procedures.

Both formats share the prompt: the question as the user turn of `comt.chat.sft_messages`, rendered
with the tokenizer's chat template and `add_generation_prompt=True`. The assistant turn is:

- ``cot``: the worked execution, one line per computation, closing with the answer statement::

      items_cost = 2 * 5 = 10
      total_cost = 10 + 10 = 20
      change = 50 - 20 = 30
      The answer is 30.

- ``comt``: a plan (a meta-thought in `comt.meta_thought` form: numbered steps over variable names,
  no computed numbers), the marker line ``Execution:``, then the execution as above::

      Variables:
      item_count = 2
      ...
      Steps:
      1. items_cost = item_count * item_price
      ...
      Answer: change
      Execution:
      items_cost = 2 * 5 = 10
      ...
      The answer is 30.

  i.e. ``plan.strip() + EXECUTION_MARKER + execution.strip()`` with ``EXECUTION_MARKER = "\\nExecution:\\n"``.

Token ids are never produced by tokenising joined text: the prompt, the plan and the marker are
tokenised separately and their ids concatenated, so the boundary between plan and execution is the
same in SFT data, CCRL rollouts, the trainer's recomputed log-probs and evaluation.

CoMT generation is two-stage, exactly as CCRL samples it: per problem, M plans continue the prompt
(greedy by default; the plan stops at the end-of-turn token or at the marker), then per plan, G
executions continue ``[prompt + plan + marker]`` (one rollout group per plan, sharing that prefix).
CoT generation is one stage: G executions continue the prompt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastcomt.comt.chat import sft_messages
from fastcomt.comt.filters import DEFAULT_ALLOWED_CONSTANTS
from fastcomt.comt.meta_thought import MetaThoughtParseError, parse_meta_thought
from fastcomt.comt.numbers import find_numbers, question_numbers, strip_step_enumerators
from fastcomt.comt.safe_eval import to_fraction
from fastcomt.rollout.engine import RolloutEngine
from fastcomt.rollout.types import GroupRequest, Sample, SamplingParams
from fastcomt.tasks import Problem, answer_statement_span, extract_answer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "FORMATS",
    "EXECUTION_MARKER",
    "ResponseParts",
    "FormatCheck",
    "Completion",
    "PlanRollout",
    "ProblemRollout",
    "render_response",
    "split_response",
    "check_format",
    "plan_leaks",
    "prompt_ids",
    "marker_ids",
    "text_ids",
    "execution_prefix_ids",
    "stop_token_ids",
    "marker_stop_token_id",
    "token_char_offsets",
    "sample_seed",
    "generate_comt",
    "generate_cot",
    "generate",
]

FORMATS: tuple[str, ...] = ("comt", "cot")
EXECUTION_MARKER = "\nExecution:\n"

# The marker as a model may write it: its own line, surrounding spaces tolerated. The first one
# splits; an "Execution:" inside a plan line ("Execution: do x") does not count.
_MARKER_LINE = re.compile(r"(?:^|\n)[ \t]*Execution:[ \t]*(?:\n|$)")
# Where a plan stopped on the marker's word token the colon and newline were never sampled.
_MARKER_START = re.compile(r"(?:^|\n)[ \t]*Execution\b")
_MARKER_WORD = "Execution"


def _check_format_name(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    return fmt


# --- text layout -------------------------------------------------------------------------------


def render_response(fmt: str, execution: str, plan: str | None = None) -> str:
    """The assistant text of one example: the execution (cot), or plan + marker + execution (comt)."""
    _check_format_name(fmt)
    if not isinstance(execution, str):
        raise TypeError(f"execution: expected str, got {type(execution).__name__}")
    if fmt == "cot":
        if plan is not None:
            raise ValueError("plan: the cot format has no plan; pass plan=None")
        return execution.strip()
    if not isinstance(plan, str) or not plan.strip():
        raise ValueError("plan: the comt format needs a non-empty plan text")
    return plan.strip() + EXECUTION_MARKER + execution.strip()


@dataclass(frozen=True)
class ResponseParts:
    """A response cut into its parts.

    plan: the text before the marker (comt), None for cot. execution: the text after the marker
    (comt; empty when the marker is missing) or the whole response (cot). answer: the answer the
    execution states (`tasks.extract_answer`, last-number fallback included), None when none.
    has_marker: whether a comt response holds the marker line (always False for cot).
    """

    plan: str | None
    execution: str
    answer: str | None
    has_marker: bool


def split_response(text: str, fmt: str = "comt") -> ResponseParts:
    """Cut an assistant response into plan / execution / answer (see ResponseParts)."""
    _check_format_name(fmt)
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    if fmt == "cot":
        execution = text.strip()
        return ResponseParts(None, execution, extract_answer(execution) if execution else None, False)
    m = _MARKER_LINE.search(text)
    if m is None:
        # No execution was written: the answer belongs to the execution, so there is none.
        return ResponseParts(text.strip(), "", None, False)
    execution = text[m.end() :].strip()
    return ResponseParts(text[: m.start()].strip(), execution, extract_answer(execution) if execution else None, True)


@dataclass(frozen=True)
class FormatCheck:
    """Whether a response has its format's shape, and why not.

    ok: format-correct. comt: the marker is there, the plan parses as a meta-thought with >= 1 step
    and states no number the question does not (besides the allowed constants), and the execution
    ends in an answer statement. cot: the response ends in an answer statement.
    plan_steps: numbered steps in the plan (0 when it does not parse; 0 for cot).
    leaked_numbers: numbers the plan computed (written as in the text).
    ends_with_answer: the execution's last statement is an explicit answer ("The answer is N.",
    "#### N", a boxed answer) with nothing but punctuation after it.
    reasons: a short phrase per failed condition (empty when ok).
    """

    ok: bool
    plan_steps: int
    leaked_numbers: tuple[str, ...]
    ends_with_answer: bool
    reasons: tuple[str, ...]


def _ends_with_answer(execution: str) -> bool:
    span = answer_statement_span(execution)
    return span is not None and execution[span[1] :].strip(" \t\r\n.!") == ""


def plan_leaks(plan: str, question: str, allowed_constants: Sequence[float] = DEFAULT_ALLOWED_CONSTANTS) -> list[str]:
    """The numbers a plan states that the question does not (step numbering and constants excepted)."""
    allowed = question_numbers(question) | {to_fraction(c) for c in allowed_constants}
    leaked: list[str] = []
    for span in find_numbers(strip_step_enumerators(plan)):
        if span.value not in allowed and span.text not in leaked:
            leaked.append(span.text)
    return leaked


def check_format(
    text: str, fmt: str, question: str, *, allowed_constants: Sequence[float] = DEFAULT_ALLOWED_CONSTANTS
) -> FormatCheck:
    """Check one assistant response against its format (see FormatCheck)."""
    parts = split_response(text, fmt)
    if not isinstance(question, str):
        raise TypeError(f"question: expected str, got {type(question).__name__}")
    reasons: list[str] = []
    steps = 0
    leaked: list[str] = []
    if fmt == "comt":
        if not parts.has_marker:
            reasons.append("no execution marker")
        try:
            steps = len(parse_meta_thought(parts.plan or "").steps)
        except MetaThoughtParseError:
            steps = 0
        if steps < 1:
            reasons.append("plan has no numbered steps")
        leaked = plan_leaks(parts.plan or "", question, allowed_constants)
        if leaked:
            reasons.append("plan computes numbers: " + ", ".join(leaked[:5]))
    ends = _ends_with_answer(parts.execution)
    if not ends:
        reasons.append("execution does not end in an answer statement")
    return FormatCheck(not reasons, steps, tuple(leaked), ends, tuple(reasons))


# --- token ids -----------------------------------------------------------------------------------


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if not callable(getattr(tokenizer, "apply_chat_template", None)) or not callable(getattr(tokenizer, "decode", None)):
        raise TypeError(f"tokenizer: expected a transformers tokenizer, got {type(tokenizer).__name__}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("tokenizer: expected a chat template (set tokenizer.chat_template); prompts are chat turns")


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a piece of text on its own, without BOS/EOS (plans, markers, targets)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str, *, system: str | None = None) -> list[int]:
    """The prompt's ids: the chat template over `sft_messages(question)` with the generation prompt.

    Same ids as the prompt part of `train.tokenizer.encode_chat_examples` (the SFT data).
    """
    _check_tokenizer(tokenizer)
    text = tokenizer.apply_chat_template(sft_messages(question, system=system), tokenize=False, add_generation_prompt=True)
    return text_ids(tokenizer, text)


def marker_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The marker's ids, tokenised alone; ValueError when the tokenizer cannot spell it."""
    ids = text_ids(tokenizer, EXECUTION_MARKER)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and unk in ids):
        raise ValueError(
            f"tokenizer: cannot encode the execution marker {EXECUTION_MARKER!r} (got ids {ids}); "
            "train the tokenizer on texts that include fastcomt.formats.EXECUTION_MARKER"
        )
    return ids


def execution_prefix_ids(prompt: Sequence[int], plan: Sequence[int], marker: Sequence[int]) -> tuple[int, ...]:
    """[prompt + plan + marker]: what every execution of a plan continues."""
    return tuple(prompt) + tuple(plan) + tuple(marker)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The ids that end an assistant turn: the EOS token and the template's end-of-turn token.

    The end-of-turn token is read off the template: the special tokens it renders right after an
    assistant message's content (`<|end|>` for ours, `<|im_end|>` for Qwen's).
    """
    _check_tokenizer(tokenizer)
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    probe = "\x01probe\x01"
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}], tokenize=False
    )
    at = full.rfind(probe)
    if at >= 0:
        special = set(tokenizer.all_special_ids)
        for tok in text_ids(tokenizer, full[at + len(probe) :]):
            if tok in special:
                if tok not in ids:
                    ids.append(tok)
                break
    if not ids:
        raise ValueError("tokenizer: found no EOS or end-of-turn token to stop generation on")
    return tuple(ids)


def marker_stop_token_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The marker's word token ("Execution") when the tokenizer spells it as one token, else None.

    A plan stage stops on it, so a model trained on whole CoMT responses does not write its
    execution twice; without such a token the plan stage runs to the end-of-turn token and the
    text after the marker is dropped.
    """
    for tok in marker_ids(tokenizer):
        if tokenizer.decode([tok]).strip() == _MARKER_WORD:
            return tok
    return None


_DECODE = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
# Tokens of left context each token is decoded with: enough for a multi-byte character (4 byte
# tokens) and for decoders that treat a sequence's first token specially (a leading-space marker).
_OFFSET_WINDOW = 8


def token_char_offsets(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text of `ids` (special tokens skipped) and each token's (start, end) in it.

    Offsets come from decoding, not from re-encoding the text: sampled ids need not be the ids the
    tokenizer would choose for that text. Token k ends where the decoding of ids[:k+1] ends in the
    full text; a prefix that ends inside a multi-byte character decodes to U+FFFD there, which
    does not count until the character completes. So special tokens get zero width, a byte token
    inside a character gets zero width, and the token completing the character covers it.

    Each prefix is not decoded whole (quadratic): token k is decoded with its few predecessors, and
    the window is placed in the text by the previous token's end. Where a window does not match
    the text there (a decoder that is not local), every prefix is decoded instead.
    """
    ids = list(ids)
    if not ids:
        return "", []
    text = tokenizer.decode(ids, **_DECODE)
    starts = [max(0, k - _OFFSET_WINDOW) for k in range(len(ids))]
    before = tokenizer.batch_decode([ids[s:k] for k, s in enumerate(starts)], **_DECODE)
    after = tokenizer.batch_decode([ids[s : k + 1] for k, s in enumerate(starts)], **_DECODE)
    offsets: list[tuple[int, int]] = []
    pos = 0
    for a, b in zip(before, after):
        # A window that starts inside a multi-byte character opens with U+FFFD for its stray
        # bytes; that character was placed by earlier tokens.
        stray = min(len(a) - len(a.lstrip("\ufffd")), len(b) - len(b.lstrip("\ufffd")))
        a, b = a[stray:], b[stray:]
        # Place the window: its text without token k ends where token k-1 ended (pending U+FFFD
        # of an unfinished character not counted).
        if text.startswith(a, pos - len(a)):
            anchor = pos - len(a)
        else:
            a_done = a.rstrip("\ufffd")
            if not text.startswith(a_done, pos - len(a_done)):
                return text, _prefix_offsets(tokenizer, ids, text)
            anchor = pos - len(a_done)
        if anchor < 0:
            return text, _prefix_offsets(tokenizer, ids, text)
        if text.startswith(b, anchor):
            end = anchor + len(b)
        else:
            b_done = b.rstrip("\ufffd")
            if not text.startswith(b_done, anchor):
                return text, _prefix_offsets(tokenizer, ids, text)
            end = anchor + len(b_done)
        end = max(end, pos)
        offsets.append((pos, end))
        pos = end
    if pos != len(text):
        return text, _prefix_offsets(tokenizer, ids, text)
    return text, offsets


def _prefix_offsets(tokenizer: PreTrainedTokenizerBase, ids: list[int], text: str) -> list[tuple[int, int]]:
    """Offsets from decoding every prefix of `ids` (the exact, quadratic fallback)."""
    prefixes = tokenizer.batch_decode([ids[: k + 1] for k in range(len(ids))], **_DECODE)
    offsets: list[tuple[int, int]] = []
    prev = 0
    for prefix in prefixes:
        end = len(prefix)
        if not text.startswith(prefix):
            end = len(prefix.rstrip("\ufffd"))
        end = min(max(end, prev), len(text))
        offsets.append((prev, end))
        prev = end
    return offsets


# --- generation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: ids and log-probs as sampled (stop token included), decoded text."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str


@dataclass(frozen=True)
class PlanRollout:
    """One plan and the executions sampled from it.

    plan: the sampled plan (comt) or None (cot).
    plan_ids: the plan's ids as they enter the execution prefix: the sampled ids up to where the
        plan text ends (end-of-turn token, marker and trailing whitespace cut off); empty for cot.
    plan_text: their text.
    prefix_ids: what the executions continued: prompt + plan_ids + marker ids (comt), prompt (cot).
    executions: G executions in seed order.
    """

    plan: Completion | None
    plan_ids: tuple[int, ...]
    plan_text: str
    prefix_ids: tuple[int, ...]
    executions: tuple[Completion, ...]


@dataclass(frozen=True)
class ProblemRollout:
    """Everything sampled for one problem in one format."""

    problem: Problem
    fmt: str
    prompt_ids: tuple[int, ...]
    plans: tuple[PlanRollout, ...]

    def response_text(self, plan: int = 0, execution: int = 0) -> str:
        """The assistant text of one (plan, execution) pair in the format's layout."""
        p = self.plans[plan]
        exe = p.executions[execution].text
        if self.fmt == "cot":
            return render_response("cot", exe)
        return p.plan_text.strip() + EXECUTION_MARKER + exe.strip()

    def response_ids(self, plan: int = 0, execution: int = 0) -> tuple[int, ...]:
        """The response as one training sequence (everything after the prompt)."""
        p = self.plans[plan]
        return p.prefix_ids[len(self.prompt_ids) :] + p.executions[execution].token_ids


def sample_seed(seed: int, problem_id: str, stage: str, index: int) -> int:
    """A sample's seed from the run seed, the problem, the stage and the sample's index.

    Hash-derived so that a problem's samples do not depend on which batch or run it lands in
    (a resumed evaluation draws the same samples as an uninterrupted one).
    """
    digest = hashlib.blake2b(f"{seed}\x00{problem_id}\x00{stage}\x00{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # [0, 2**63)


def _with_stops(sampling: SamplingParams, stops: Sequence[int]) -> SamplingParams:
    merged = tuple(dict.fromkeys(tuple(sampling.stop_token_ids) + tuple(stops)))
    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=sampling.max_new_tokens,
        stop_token_ids=merged,
    )


def _completion(tokenizer: PreTrainedTokenizerBase, sample: Sample) -> Completion:
    text = tokenizer.decode(list(sample.token_ids), **_DECODE)
    return Completion(tuple(sample.token_ids), tuple(sample.logprobs), text, sample.finish_reason)


def _plan_cut(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[int, str]:
    """How many sampled plan ids enter the prefix, and their text.

    The plan ends before the first special token and before the marker (written whole, or cut
    short by the stop on its word token); trailing whitespace tokens go too, since the marker
    starts with its own newline. A token that straddles the cut is dropped with what follows.
    """
    text, offsets = token_char_offsets(tokenizer, ids)
    m = _MARKER_START.search(text)
    cut = len(text) if m is None else m.start()
    special = set(tokenizer.all_special_ids)
    n = 0
    while n < len(ids) and ids[n] not in special and offsets[n][1] <= cut:
        n += 1
    while n > 0 and text[offsets[n - 1][0] : offsets[n - 1][1]].strip() == "":
        n -= 1
    return n, text[: offsets[n - 1][1]] if n else ""


def _check_problems(problems: Sequence[Problem]) -> list[Problem]:
    if isinstance(problems, Problem):
        raise TypeError("problems: expected a sequence of Problem; wrap a single problem in a list")
    problems = list(problems)
    for i, p in enumerate(problems):
        if not isinstance(p, Problem):
            raise TypeError(f"problems[{i}]: expected Problem, got {type(p).__name__}")
    return problems


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return value


def _check_engine_inputs(engine: RolloutEngine, sampling: SamplingParams) -> None:
    if not isinstance(engine, RolloutEngine):
        raise TypeError(f"engine: expected a RolloutEngine, got {type(engine).__name__}")
    if not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling: expected SamplingParams, got {type(sampling).__name__}")


def generate_comt(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    sampling: SamplingParams,
    plans_per_problem: int = 1,
    executions_per_plan: int = 1,
    *,
    plan_sampling: SamplingParams | None = None,
    seed: int = 0,
    system: str | None = None,
) -> list[ProblemRollout]:
    """Two-stage CoMT sampling: M plans per problem, then G executions per plan.

    sampling: the executions' sampling (temperature 0 = greedy).
    plan_sampling: the plans' sampling; default greedy with `sampling.max_new_tokens` when M == 1,
        and `sampling` itself when M > 1 (M greedy plans would be M copies).
    The tokenizer's end-of-turn ids are added to both stages' stop ids, the marker's word token to
    the plan stage's. Two `engine.generate` calls in all: one group per problem (M plan samples
    sharing the prompt), then one group per plan (G executions sharing [prompt + plan + marker]).
    """
    _check_engine_inputs(engine, sampling)
    problems = _check_problems(problems)
    m_plans = _check_count(plans_per_problem, "plans_per_problem")
    g_execs = _check_count(executions_per_plan, "executions_per_plan")
    if plan_sampling is None:
        plan_sampling = sampling if m_plans > 1 else SamplingParams(temperature=0.0, max_new_tokens=sampling.max_new_tokens)
    elif not isinstance(plan_sampling, SamplingParams):
        raise TypeError(f"plan_sampling: expected SamplingParams or None, got {type(plan_sampling).__name__}")
    if not problems:
        return []
    eot = stop_token_ids(tokenizer)
    marker = tuple(marker_ids(tokenizer))
    marker_stop = marker_stop_token_id(tokenizer)
    plan_params = _with_stops(plan_sampling, eot + (() if marker_stop is None else (marker_stop,)))
    exec_params = _with_stops(sampling, eot)

    prompts = [tuple(prompt_ids(tokenizer, p.question, system=system)) for p in problems]
    plan_groups = [
        GroupRequest(prompt, tuple(sample_seed(seed, p.id, "plan", j) for j in range(m_plans)), plan_params,
                     request_id=f"{p.id}/plans", affinity_key=p.id)  # fmt: skip
        for p, prompt in zip(problems, prompts)
    ]
    plan_results = engine.generate(plan_groups)

    cuts: list[list[tuple[Completion, tuple[int, ...], str, tuple[int, ...]]]] = []
    exec_groups = []
    for p, prompt, result in zip(problems, prompts, plan_results):
        per_problem = []
        for j, sample in enumerate(result.samples):
            n, text = _plan_cut(tokenizer, sample.token_ids)
            plan = tuple(sample.token_ids[:n])
            prefix = execution_prefix_ids(prompt, plan, marker)
            per_problem.append((_completion(tokenizer, sample), plan, text, prefix))
            seeds = tuple(sample_seed(seed, p.id, f"exec{j}", k) for k in range(g_execs))
            exec_groups.append(GroupRequest(prefix, seeds, exec_params, request_id=f"{p.id}/plan{j}", affinity_key=p.id))
        cuts.append(per_problem)
    exec_results = iter(engine.generate(exec_groups))

    rollouts = []
    for p, prompt, per_problem in zip(problems, prompts, cuts):
        plans = []
        for completion, plan, text, prefix in per_problem:
            executions = tuple(_completion(tokenizer, s) for s in next(exec_results).samples)
            plans.append(PlanRollout(completion, plan, text, prefix, executions))
        rollouts.append(ProblemRollout(p, "comt", prompt, tuple(plans)))
    return rollouts


def generate_cot(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    sampling: SamplingParams,
    samples_per_problem: int = 1,
    *,
    seed: int = 0,
    system: str | None = None,
) -> list[ProblemRollout]:
    """One-stage CoT sampling: G executions continue each prompt (one `engine.generate` call)."""
    _check_engine_inputs(engine, sampling)
    problems = _check_problems(problems)
    g = _check_count(samples_per_problem, "samples_per_problem")
    if not problems:
        return []
    params = _with_stops(sampling, stop_token_ids(tokenizer))
    prompts = [tuple(prompt_ids(tokenizer, p.question, system=system)) for p in problems]
    groups = [
        GroupRequest(prompt, tuple(sample_seed(seed, p.id, "exec0", k) for k in range(g)), params,
                     request_id=f"{p.id}/cot", affinity_key=p.id)  # fmt: skip
        for p, prompt in zip(problems, prompts)
    ]
    rollouts = []
    for p, prompt, result in zip(problems, prompts, engine.generate(groups)):
        executions = tuple(_completion(tokenizer, s) for s in result.samples)
        rollouts.append(ProblemRollout(p, "cot", prompt, (PlanRollout(None, (), "", prompt, executions),)))
    return rollouts


def generate(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    sampling: SamplingParams,
    fmt: str,
    *,
    seed: int = 0,
    system: str | None = None,
    plan_sampling: SamplingParams | None = None,
) -> list[ProblemRollout]:
    """One response per problem in format `fmt` (one plan and one execution for comt)."""
    if _check_format_name(fmt) == "cot":
        if plan_sampling is not None:
            raise ValueError("plan_sampling: the cot format has no plan stage; pass None")
        return generate_cot(engine, tokenizer, problems, sampling, seed=seed, system=system)
    return generate_comt(engine, tokenizer, problems, sampling, plan_sampling=plan_sampling, seed=seed, system=system)
