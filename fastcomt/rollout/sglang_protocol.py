"""The SGLang native ``/generate`` request and response, for token ids (SGLang 0.5.23).

Shared by ``SGLangEngine`` (``sglang.Engine.generate``) and ``SGLangHTTPEngine`` (``POST
/generate``): both take ``GenerateReqInput`` fields and return the same output dicts. References
are paths inside the sglang 0.5.23 wheel:

- request fields: ``srt/managers/io_struct.py::GenerateReqInput`` -- ``input_ids`` (one list, or a
  list of lists for a batch), ``sampling_params`` (dict or list), ``return_logprob``,
  ``logprob_start_len``, ``rid`` (str or list);
- ``logprob_start_len=-1`` means "log-probs of output tokens only" (``srt/managers/scheduler.py``
  sets it to ``len(input_ids) - 1``); asking for prompt log-probs would stop the radix-cache match
  at ``logprob_start_len`` and so cap prefix reuse;
- sampling fields: ``srt/sampling/sampling_params.py::SamplingParams`` -- ``temperature``,
  ``top_p``, ``top_k`` (-1 disables), ``max_new_tokens``, ``stop_token_ids``, ``no_stop_trim``
  (keep the stop token in ``output_ids``) and ``sampling_seed``, which SGLang honours only under
  ``--enable-deterministic-inference`` (that also switches to the pytorch sampling backend,
  ``srt/arg_groups/overrides.py``; ``srt/sampling/sampling_batch_info.py`` drops seeds otherwise):
  without it siblings still differ, but a rerun does not reproduce them. Also, SGLang stops on the
  model's EOS ids besides ``stop_token_ids`` (``Req._check_token_based_finish``);
- output: ``{"output_ids": [...], "meta_info": {...}}`` built in
  ``srt/managers/tokenizer_manager.py`` (``_handle_batch_output``); ``meta_info`` holds ``id`` (the
  rid), ``finish_reason`` (``{"type": "stop", "matched": id}``, ``{"type": "length", "length": n}``
  or ``{"type": "abort", "message": ...}``, ``srt/managers/schedule_batch.py``), ``prompt_tokens``,
  ``completion_tokens``, ``cached_tokens`` (prefix tokens served by the radix cache),
  ``output_token_logprobs`` (a list of ``[logprob, token_id, text_or_null]``) and
  ``weight_version``;
- returned log-probs are ``log(softmax(logits / T))`` over the full vocabulary before top-k/top-p
  (``srt/layers/sampler.py``, standard path; greedy: ``log_softmax(logits)``) -- the trainer's
  convention -- unless the server sets ``SGLANG_RETURN_ORIGINAL_LOGPROB`` (raw, T = 1): leave it
  unset.

Siblings of a group are "primed": the prefix is sent once with ``max_new_tokens=0`` so it lands in
the radix cache, then the G siblings (each with its own ``sampling_seed`` and rid) hit it. SGLang's
own ``n > 1`` does the same priming (``tokenizer_manager.py``, "Cache the common prefix for parallel
sampling") but gives every sibling the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastcomt.http_retry import MalformedResponseError
from fastcomt.rollout.types import GroupRequest, Sample, SamplingParams

TARGET_SGLANG_VERSION = "0.5.23"


class GenerationAbortedError(RuntimeError):
    """The server aborted a request (finish_reason "abort", e.g. a weight update paused it)."""


def sampling_payload(params: SamplingParams, seed: int | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else -1,
        "max_new_tokens": params.max_new_tokens,
        "stop_token_ids": list(params.stop_token_ids),
        "no_stop_trim": True,
        "skip_special_tokens": False,
    }
    if seed is not None:
        payload["sampling_seed"] = seed
    return payload


def priming_payload(group: GroupRequest, rid: str) -> dict[str, Any]:
    """Prefill-only request that puts the prefix in the radix cache."""
    params = sampling_payload(group.sampling, None)
    params["max_new_tokens"] = 0
    return {"input_ids": list(group.prefix_ids), "sampling_params": params, "rid": rid, "stream": False}


def siblings_payload(group: GroupRequest, rids: Sequence[str]) -> dict[str, Any]:
    """One batch request holding the G samples of a group, output log-probs only."""
    prefix = list(group.prefix_ids)
    return {
        "input_ids": [prefix] * group.num_samples,
        "sampling_params": [sampling_payload(group.sampling, s) for s in group.seeds],
        "return_logprob": True,
        "logprob_start_len": -1,
        "rid": list(rids),
        "stream": False,
    }


@dataclass(frozen=True)
class ParsedOutput:
    rid: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str
    cached_tokens: int
    weight_version: str | None


def parse_output(item: Any, *, expect_logprobs: bool) -> ParsedOutput:
    """Validate one ``/generate`` output dict; raise MalformedResponseError naming what is wrong."""
    if not isinstance(item, dict):
        raise MalformedResponseError(f"generate output: expected a JSON object, got {type(item).__name__}")
    meta = item.get("meta_info")
    if not isinstance(meta, dict):
        raise MalformedResponseError(f"generate output lacks a meta_info object: {str(item)[:200]}")
    rid = meta.get("id")
    if not isinstance(rid, str):
        raise MalformedResponseError(f"meta_info.id: expected the request id string, got {rid!r}")
    finish = meta.get("finish_reason")
    if not isinstance(finish, dict) or finish.get("type") not in ("stop", "length", "abort"):
        raise MalformedResponseError(
            f"request {rid}: meta_info.finish_reason: expected a dict with type stop/length/abort, got {finish!r}"
        )
    if finish["type"] == "abort":
        raise GenerationAbortedError(f"request {rid} was aborted by the server: {finish.get('message')}")
    output_ids = item.get("output_ids")
    if not isinstance(output_ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in output_ids):
        raise MalformedResponseError(
            f"request {rid}: output_ids: expected a list of ints (start the server with --skip-tokenizer-init), got {str(output_ids)[:200]}"
        )
    cached = meta.get("cached_tokens")
    if not isinstance(cached, int) or isinstance(cached, bool) or cached < 0:
        raise MalformedResponseError(f"request {rid}: meta_info.cached_tokens: expected an int >= 0, got {cached!r}")
    logprobs: tuple[float, ...] = ()
    if expect_logprobs:
        entries = meta.get("output_token_logprobs")
        if not isinstance(entries, list) or len(entries) != len(output_ids):
            raise MalformedResponseError(
                f"request {rid}: meta_info.output_token_logprobs must list one entry per output token "
                f"({len(output_ids)}), got {str(entries)[:200]}"
            )
        values = []
        for pos, (entry, token) in enumerate(zip(entries, output_ids)):
            if not (
                isinstance(entry, (list, tuple))
                and len(entry) >= 2
                and isinstance(entry[0], (int, float))
                and entry[1] == token
            ):
                raise MalformedResponseError(
                    f"request {rid}: output_token_logprobs[{pos}]: expected [logprob, {token}, ...], got {entry!r}"
                )
            values.append(float(entry[0]))
        logprobs = tuple(values)
    version = meta.get("weight_version")
    return ParsedOutput(
        rid=rid,
        token_ids=tuple(output_ids),
        logprobs=logprobs,
        finish_reason=finish["type"],
        cached_tokens=cached,
        weight_version=None if version is None else str(version),
    )


def outputs_by_rid(response: Any, rids: Sequence[str], *, expect_logprobs: bool) -> dict[str, ParsedOutput]:
    """Match a response to the rids sent: exactly one output per rid, none unknown or repeated."""
    items = response if isinstance(response, list) else [response]
    parsed: dict[str, ParsedOutput] = {}
    for item in items:
        out = parse_output(item, expect_logprobs=expect_logprobs)
        if out.rid in parsed:
            raise MalformedResponseError(f"response repeats request id {out.rid}")
        parsed[out.rid] = out
    missing = [r for r in rids if r not in parsed]
    unknown = [r for r in parsed if r not in set(rids)]
    if missing or unknown:
        raise MalformedResponseError(
            f"response ids do not match the request: missing {missing[:3]}, unexpected {unknown[:3]}"
        )
    return parsed


def build_samples(
    group: GroupRequest,
    sibling_rids: Sequence[str],
    outputs: dict[str, ParsedOutput],
    weight_version: int,
    *,
    prime_cached: int,
) -> tuple[Sample, ...]:
    """Samples in seed order.

    The priming request's computed tokens are charged to the siblings, first ones first (a
    sibling's cached tokens shrink by what it is charged), so ``GroupResult.prefill_tokens`` counts
    the prefix work the server did: priming plus the tokens each sibling recomputed.
    """
    prefix_len = len(group.prefix_ids)
    uncharged = prefix_len - min(prime_cached, prefix_len)
    samples = []
    for seed, rid in zip(group.seeds, sibling_rids):
        out = outputs[rid]
        if len(out.token_ids) > group.sampling.max_new_tokens:
            raise MalformedResponseError(
                f"request {rid} returned {len(out.token_ids)} tokens, more than max_new_tokens={group.sampling.max_new_tokens}"
            )
        cached = min(out.cached_tokens, prefix_len)
        charge = min(uncharged, cached)
        cached -= charge
        uncharged -= charge
        samples.append(
            Sample(
                token_ids=out.token_ids,
                logprobs=out.logprobs,
                finish_reason=out.finish_reason,
                cached_tokens=cached,
                weight_version=weight_version,
                seed=seed,
            )
        )
    return tuple(samples)
