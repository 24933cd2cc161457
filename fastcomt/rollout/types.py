"""Request and result records shared by every rollout engine (token ids in, token ids out).

A *group* is what CCRL samples per plan: one prefix ``[prompt ids + plan ids]`` and G executions
that all continue it. The trainer owns the tokenizer and the chat template: it tokenises the
prompt and the plan separately and concatenates the ids (``GroupRequest.from_parts``), so a plan
boundary never depends on how a tokenizer would merge the joined text.

Log-prob convention (identical in every backend, and what the trainer recomputes): for a sampled
token ``y_t``, ``logprob_t = log_softmax(logits_t / T)[y_t]`` over the *full* vocabulary, taken
*before* top-k/top-p filtering (filtering only decides which tokens may be drawn). With
``temperature == 0`` decoding is greedy and the log-prob is taken at ``T = 1``, as SGLang does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def _as_token_tuple(values: Iterable[int], name: str) -> tuple[int, ...]:
    try:
        ids = tuple(values)
    except TypeError as exc:
        raise TypeError(f"{name}: expected a sequence of int token ids, got {type(values).__name__}") from exc
    for i, tok in enumerate(ids):
        # bool is an int subclass but never a token id.
        if isinstance(tok, bool) or not isinstance(tok, int):
            raise TypeError(f"{name}[{i}]: expected an int token id, got {type(tok).__name__}")
        if tok < 0:
            raise ValueError(f"{name}[{i}]: expected a non-negative token id, got {tok}")
    return ids


@dataclass(frozen=True)
class SamplingParams:
    """How one group is sampled.

    temperature: 0 means greedy; otherwise logits are divided by it before the softmax.
    top_p: nucleus mass in (0, 1]; 1 disables.
    top_k: keep the k most likely tokens; -1 (or 0) disables.
    max_new_tokens: completion budget, >= 1.
    stop_token_ids: sampling one of these ends the sample with finish reason "stop"; the stop
        token is kept in the completion (the trainer needs its log-prob). Include the model's EOS
        here: the Transformers backend stops only on these ids (SGLang also stops on the EOS ids
        of the model's generation config).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
            raise TypeError(f"temperature: expected a float, got {type(self.temperature).__name__}")
        if not (self.temperature >= 0.0) or self.temperature == float("inf"):
            raise ValueError(f"temperature: expected a finite number >= 0, got {self.temperature}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)):
            raise TypeError(f"top_p: expected a float, got {type(self.top_p).__name__}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p: expected a number in (0, 1], got {self.top_p}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int):
            raise TypeError(f"top_k: expected an int, got {type(self.top_k).__name__}")
        if self.top_k < -1:
            raise ValueError(f"top_k: expected -1 (disabled), 0 (disabled) or >= 1, got {self.top_k}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise TypeError(f"max_new_tokens: expected an int, got {type(self.max_new_tokens).__name__}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")
        object.__setattr__(self, "stop_token_ids", _as_token_tuple(self.stop_token_ids, "stop_token_ids"))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def effective_top_k(self) -> int:
        """top_k with both "disabled" spellings folded to 0."""
        return self.top_k if self.top_k > 0 else 0


@dataclass(frozen=True)
class GroupRequest:
    """G samples that share one prefix.

    prefix_ids: prompt ids followed by plan ids (see ``from_parts``); at least one token.
    seeds: one seed per sample; a sample's tokens depend only on its seed, the prefix, the
        sampling parameters and the weights, never on which other samples share the batch.
    request_id: names the group in logs and in SGLang request ids (``rid``); generated if None.
    affinity_key: groups with the same key go to the same server (use the problem id so one
        problem's plans share the cached prompt); defaults to a hash of the prefix.
    """

    prefix_ids: tuple[int, ...]
    seeds: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str | None = None
    affinity_key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix_ids", _as_token_tuple(self.prefix_ids, "prefix_ids"))
        if not self.prefix_ids:
            raise ValueError("prefix_ids: expected at least one token id, got none")
        try:
            seeds = tuple(self.seeds)
        except TypeError as exc:
            raise TypeError(f"seeds: expected a sequence of int, got {type(self.seeds).__name__}") from exc
        if not seeds:
            raise ValueError("seeds: expected one seed per sample (G >= 1), got an empty sequence")
        for i, s in enumerate(seeds):
            if isinstance(s, bool) or not isinstance(s, int):
                raise TypeError(f"seeds[{i}]: expected an int, got {type(s).__name__}")
            if not (0 <= s < 2**63):
                raise ValueError(f"seeds[{i}]: expected an int in [0, 2**63), got {s}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.sampling, SamplingParams):
            raise TypeError(f"sampling: expected a SamplingParams, got {type(self.sampling).__name__}")
        if self.request_id is not None and (not isinstance(self.request_id, str) or not self.request_id):
            raise ValueError(f"request_id: expected a non-empty str or None, got {self.request_id!r}")
        if self.affinity_key is not None and not isinstance(self.affinity_key, str):
            raise TypeError(f"affinity_key: expected a str or None, got {type(self.affinity_key).__name__}")

    @property
    def num_samples(self) -> int:
        return len(self.seeds)

    @classmethod
    def from_parts(
        cls,
        prompt_ids: Sequence[int],
        plan_ids: Sequence[int],
        seeds: Sequence[int],
        sampling: SamplingParams | None = None,
        **kwargs: str | None,
    ) -> GroupRequest:
        """Build the group prefix by concatenating separately tokenised prompt and plan ids."""
        prompt = _as_token_tuple(prompt_ids, "prompt_ids")
        plan = _as_token_tuple(plan_ids, "plan_ids")
        return cls(prompt + plan, tuple(seeds), sampling or SamplingParams(), **kwargs)


FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class Sample:
    """One sampled completion.

    token_ids: the completion (stop token included when finish_reason == "stop").
    logprobs: log_softmax(logits / T)[token] for each completion token (see module docstring).
    finish_reason: "stop" (a stop token was sampled) or "length" (max_new_tokens or the model's
        context limit was reached).
    cached_tokens: prefix tokens this sample did not compute itself (served from a shared
        prefill or a prefix cache); its group's prefill work is ``len(prefix) - cached_tokens``
        summed over the samples.
    weight_version: the version of the weights that sampled it.
    seed: the seed it was drawn with.
    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str
    cached_tokens: int
    weight_version: int
    seed: int

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(
                f"token_ids and logprobs must have equal length, got {len(self.token_ids)} and {len(self.logprobs)}"
            )
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason: expected one of {FINISH_REASONS}, got {self.finish_reason!r}")
        if self.cached_tokens < 0:
            raise ValueError(f"cached_tokens: expected >= 0, got {self.cached_tokens}")


@dataclass(frozen=True)
class GroupResult:
    """The samples of one group, in seed order, and the prefill work spent on its prefix."""

    request: GroupRequest
    samples: tuple[Sample, ...]

    def __post_init__(self) -> None:
        if len(self.samples) != self.request.num_samples:
            raise ValueError(
                f"group {self.request.request_id!r} expects {self.request.num_samples} samples, got {len(self.samples)}"
            )

    @property
    def prefill_tokens(self) -> int:
        """Prefix tokens computed for this group (prefix length times G minus cached tokens)."""
        prefix_len = len(self.request.prefix_ids)
        return sum(prefix_len - s.cached_tokens for s in self.samples)

    @property
    def cached_tokens(self) -> int:
        return sum(s.cached_tokens for s in self.samples)


def rollout_totals(results: Sequence[GroupResult]) -> dict[str, int]:
    """Totals for logging: prefix tokens requested, computed, served from cache, tokens generated."""
    prefix = sum(len(r.request.prefix_ids) * r.request.num_samples for r in results)
    cached = sum(r.cached_tokens for r in results)
    generated = sum(len(s.token_ids) for r in results for s in r.samples)
    return {
        "prefix_tokens": prefix,
        "prefill_tokens": prefix - cached,
        "cached_tokens": cached,
        "generated_tokens": generated,
    }
