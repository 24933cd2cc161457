"""Rollouts on an in-process Hugging Face causal LM, computing each shared prefix once.

Per batch of groups:

1. Prefill: the group prefixes form a radix tree (``prefix_tree``); it is prefilled level by level,
   one batched forward per level, each node's span computed once on top of its parent's KV
   (rows copied with ``Cache.reorder_cache``; spans left-padded and masked, positions explicit).
2. Expand: each group's leaf row is copied G times, so the G samples start from the same KV.
3. Decode: all samples of all groups step together; finished rows are dropped from the batch.

Sampling is seeded per sample (``sampling``), so a sample does not depend on the batch it ran in.
Log-probs are ``log_softmax(logits.float() / T)`` of the sampled token over the full vocabulary:
the value a teacher-forced forward of the same model over the same ids gives.

Nothing is kept between ``generate`` calls, so there is no cross-call prefix cache to flush here;
``flush_cache`` only checks the engine is open (SGLang backends keep a radix cache and do flush).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from fastcomt.rollout.engine import RolloutEngine, WeightsSource, check_groups, check_version
from fastcomt.rollout.prefix_tree import build_prefix_tree
from fastcomt.rollout.sampling import sample_next_tokens, sample_uniforms
from fastcomt.rollout.types import GroupRequest, GroupResult, Sample
from fastcomt.rollout.weights import copy_into_model, named_tensors

_PAD_ID = 0  # any valid id: padded positions are masked out of attention


@dataclass
class _Rows:
    """Per-row decoding state kept aligned with the KV cache rows."""

    mask: torch.Tensor  # [R, L] long, 1 where the cache column holds a real token of that row
    lengths: torch.Tensor  # [R] long, real tokens so far (= position of the next token)


@dataclass
class _Prefill:
    """What the tree prefill leaves for decoding."""

    rows: _Rows
    leaf_rows: list[int]  # cache row of each group's leaf
    leaf_logits: list[torch.Tensor]  # next-token logits of each group's full prefix
    computed: list[list[int]]  # prefix tokens each sample computed (see prefix_tree)


class TransformersEngine(RolloutEngine):
    """RolloutEngine on a ``transformers`` causal LM (CPU or GPU, any dtype).

    max_batch_samples: samples decoded together; groups are packed into batches up to this many
        samples (a bigger group runs alone), keeping request order.
    """

    def __init__(self, model: PreTrainedModel, *, weight_version: int = 0, max_batch_samples: int = 256) -> None:
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"model: expected a transformers causal LM, got {type(model).__name__}")
        if isinstance(max_batch_samples, bool) or not isinstance(max_batch_samples, int) or max_batch_samples < 1:
            raise ValueError(f"max_batch_samples: expected an int >= 1, got {max_batch_samples!r}")
        self._model: PreTrainedModel | None = model.eval()
        self._version = check_version(weight_version)
        self._max_batch_samples = max_batch_samples
        self._lock = threading.Lock()
        params = inspect.signature(model.forward).parameters
        # transformers 5.24 renamed `past_key_values` to `cache`; accept both spellings.
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._max_positions = getattr(model.config, "max_position_embeddings", None)

    @classmethod
    def from_pretrained(
        cls, path: str, *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu", **kwargs
    ) -> TransformersEngine:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        return cls(model, **kwargs)

    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            raise RuntimeError("TransformersEngine is closed")
        return self._model

    @property
    def weight_version(self) -> int:
        return self._version

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        groups = check_groups(groups)
        model = self.model
        vocab = model.config.vocab_size
        for i, g in enumerate(groups):
            if self._max_positions is not None and len(g.prefix_ids) >= self._max_positions:
                raise ValueError(
                    f"groups[{i}] prefix has {len(g.prefix_ids)} tokens; the model holds at most {self._max_positions - 1} before generating"
                )
            too_big = [t for t in g.prefix_ids + g.sampling.stop_token_ids if t >= vocab]
            if too_big:
                raise ValueError(f"groups[{i}] holds token id {too_big[0]} outside the vocabulary of size {vocab}")
        results: list[GroupResult] = []
        with self._lock, torch.inference_mode():
            for batch in self._batches(groups):
                results.extend(self._generate_batch(batch))
        return results

    def update_weights(self, weights: WeightsSource, version: int) -> None:
        version = check_version(version)
        pairs = named_tensors(weights)
        with self._lock:
            copy_into_model(self.model, pairs)
            self._version = version

    def flush_cache(self) -> None:
        _ = self.model  # raises if closed; no KV outlives a generate call

    def close(self) -> None:
        with self._lock:
            self._model = None

    # -- internals -----------------------------------------------------------------------------

    def _batches(self, groups: list[GroupRequest]) -> list[list[GroupRequest]]:
        batches: list[list[GroupRequest]] = []
        current: list[GroupRequest] = []
        size = 0
        for g in groups:
            if current and size + g.num_samples > self._max_batch_samples:
                batches.append(current)
                current, size = [], 0
            current.append(g)
            size += g.num_samples
        if current:
            batches.append(current)
        return batches

    def _forward(self, ids: torch.Tensor, rows: _Rows, positions: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=rows.mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        return out.logits[:, -1].float()

    def _prefill(self, groups: list[GroupRequest], cache: DynamicCache) -> _Prefill:
        """Prefill the batch's prefix tree into ``cache``, one forward per tree level."""
        device = self.model.device
        tree = build_prefix_tree([g.prefix_ids for g in groups])
        rows: _Rows | None = None
        row_of_node: dict[int, int] = {}
        leaf_logits: dict[int, torch.Tensor] = {}
        for level in tree.levels():
            # Leaves of shallower levels ride along (with an all-padding span) so that every
            # leaf ends in one cache; parents are copied once per child.
            carried = [n for n in row_of_node if tree.nodes[n].groups]
            sources = [row_of_node[tree.nodes[n].parent] for n in level if tree.nodes[n].parent is not None]
            sources += [row_of_node[n] for n in carried]
            width = max(len(tree.nodes[n].tokens) for n in level)
            num_rows = len(level) + len(carried)
            ids = torch.full((num_rows, width), _PAD_ID, dtype=torch.long, device=device)
            span_mask = torch.zeros((num_rows, width), dtype=torch.long, device=device)
            for r, n in enumerate(level):
                span = tree.nodes[n].tokens
                ids[r, width - len(span) :] = torch.tensor(span, dtype=torch.long, device=device)
                span_mask[r, width - len(span) :] = 1
            if rows is None:
                prev_mask = torch.zeros((num_rows, 0), dtype=torch.long, device=device)
                prev_len = torch.zeros(num_rows, dtype=torch.long, device=device)
            else:
                index = torch.tensor(sources, dtype=torch.long, device=device)
                cache.reorder_cache(index)
                prev_mask, prev_len = rows.mask[index], rows.lengths[index]
            rows = _Rows(mask=torch.cat([prev_mask, span_mask], dim=1), lengths=prev_len + span_mask.sum(dim=1))
            positions = (prev_len[:, None] + span_mask.cumsum(dim=1) - 1).clamp_(min=0)
            logits = self._forward(ids, rows, positions, cache)
            row_of_node = {n: r for r, n in enumerate(level)} | {n: len(level) + i for i, n in enumerate(carried)}
            for r, n in enumerate(level):
                if tree.nodes[n].groups:
                    leaf_logits[n] = logits[r]
        assert rows is not None
        leaves = tree.leaf_of_group
        return _Prefill(
            rows=rows,
            leaf_rows=[row_of_node[leaf] for leaf in leaves],
            leaf_logits=[leaf_logits[leaf] for leaf in leaves],
            computed=tree.computed_tokens_per_sample([g.num_samples for g in groups]),
        )

    def _generate_batch(self, groups: list[GroupRequest]) -> list[GroupResult]:
        model = self.model
        device = model.device
        cache = DynamicCache(config=model.config)
        prefill = self._prefill(groups, cache)

        # One row per sample, copied from its group's leaf.
        sample_group = [gi for gi, g in enumerate(groups) for _ in range(g.num_samples)]
        index = torch.tensor([prefill.leaf_rows[gi] for gi in sample_group], dtype=torch.long, device=device)
        cache.reorder_cache(index)
        rows = _Rows(mask=prefill.rows.mask[index], lengths=prefill.rows.lengths[index])
        logits = torch.stack([prefill.leaf_logits[gi] for gi in sample_group])

        seeds = [s for g in groups for s in g.seeds]
        params = [groups[gi].sampling for gi in sample_group]
        temperature = torch.tensor([p.temperature for p in params], dtype=torch.float32, device=device)
        top_k = torch.tensor([p.effective_top_k for p in params], dtype=torch.long, device=device)
        top_p = torch.tensor([p.top_p for p in params], dtype=torch.float32, device=device)
        stops = [frozenset(p.stop_token_ids) for p in params]
        budgets = []
        for gi in sample_group:
            budget = groups[gi].sampling.max_new_tokens
            if self._max_positions is not None:
                budget = min(budget, self._max_positions - len(groups[gi].prefix_ids))
            budgets.append(budget)

        n = len(sample_group)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        finish: list[str] = [""] * n
        active = list(range(n))
        while True:
            uniforms = sample_uniforms([seeds[s] for s in active], [len(tokens[s]) for s in active], device)
            act = torch.tensor(active, dtype=torch.long, device=device)
            next_ids, next_lp = sample_next_tokens(logits, temperature[act], top_k[act], top_p[act], uniforms)
            keep = []
            for i, (s, tok, lp) in enumerate(zip(active, next_ids.tolist(), next_lp.tolist())):
                tokens[s].append(tok)
                logprobs[s].append(lp)
                if tok in stops[s]:
                    finish[s] = "stop"
                elif len(tokens[s]) >= budgets[s]:
                    finish[s] = "length"
                else:
                    keep.append(i)
            if not keep:
                break
            if len(keep) < len(active):
                kept = torch.tensor(keep, dtype=torch.long, device=device)
                cache.reorder_cache(kept)
                rows = _Rows(mask=rows.mask[kept], lengths=rows.lengths[kept])
                next_ids = next_ids[kept]
                active = [active[i] for i in keep]
            ones = torch.ones((len(active), 1), dtype=torch.long, device=device)
            positions = rows.lengths[:, None].clone()
            rows = _Rows(mask=torch.cat([rows.mask, ones], dim=1), lengths=rows.lengths + 1)
            logits = self._forward(next_ids[:, None], rows, positions, cache)

        results = []
        s = 0
        for gi, g in enumerate(groups):
            samples = []
            for j, seed in enumerate(g.seeds):
                samples.append(
                    Sample(
                        token_ids=tuple(tokens[s]),
                        logprobs=tuple(logprobs[s]),
                        finish_reason=finish[s],
                        cached_tokens=len(g.prefix_ids) - prefill.computed[gi][j],
                        weight_version=self._version,
                        seed=seed,
                    )
                )
                s += 1
            results.append(GroupResult(request=g, samples=tuple(samples)))
        return results
