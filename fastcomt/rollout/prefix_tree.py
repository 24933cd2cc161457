"""The radix tree of the group prefixes in one batch: which token spans are computed once.

CCRL prefixes nest: a chat-template header shared by every problem, a problem's prompt shared by
its M plans, a plan shared by its G executions. Compressing the batch's prefixes into a radix tree
(each node a maximal shared span) and prefilling it level by level computes every span once;
the G samples of a group then copy the KV of the group's leaf.

Accounting: a span's tokens are charged to the first sample (in request order) whose prefix
contains it; every other sample reports them as cached. So for every batch
``sum(len(prefix) * G) == computed + sum(cached_tokens)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class PrefixNode:
    """A maximal span shared by every prefix below it.

    tokens: the span; parent: index of the parent node (None for a root child); depth: 0 for root
    children; groups: indices of the groups whose prefix ends exactly at this node.
    """

    tokens: tuple[int, ...]
    parent: int | None
    depth: int
    groups: list[int] = field(default_factory=list)


@dataclass
class PrefixTree:
    nodes: list[PrefixNode]
    leaf_of_group: list[int]

    def levels(self) -> list[list[int]]:
        """Node indices grouped by depth, shallowest first."""
        out: list[list[int]] = []
        for i, node in enumerate(self.nodes):
            while len(out) <= node.depth:
                out.append([])
            out[node.depth].append(i)
        return out

    def path(self, node: int) -> list[int]:
        """Node indices from the root child down to ``node``."""
        out = []
        current: int | None = node
        while current is not None:
            out.append(current)
            current = self.nodes[current].parent
        return out[::-1]

    def computed_tokens_per_sample(self, num_samples: Sequence[int]) -> list[list[int]]:
        """Prefix tokens each sample computes: every span is charged to its first user."""
        charged: set[int] = set()
        out = []
        for group, leaf in enumerate(self.leaf_of_group):
            per_sample = [0] * num_samples[group]
            for node in self.path(leaf):
                if node not in charged:
                    charged.add(node)
                    per_sample[0] += len(self.nodes[node].tokens)
            out.append(per_sample)
        return out


def build_prefix_tree(prefixes: Sequence[tuple[int, ...]]) -> PrefixTree:
    """Radix tree of non-empty token tuples; identical prefixes share one leaf."""
    if any(len(p) == 0 for p in prefixes):
        raise ValueError("prefixes: expected at least one token in every prefix, got an empty one")
    nodes: list[PrefixNode] = []
    leaf_of_group = [-1] * len(prefixes)

    # Iterative to keep deep trees off the Python stack: (member groups, span start, parent, depth).
    pending: list[tuple[list[int], int, int | None, int]] = []
    for members in _split_by_next_token(list(range(len(prefixes))), prefixes, 0):
        pending.append((members, 0, None, 0))
    while pending:
        members, start, parent, depth = pending.pop()
        # All members agree on token `start`; extend the span while they keep agreeing.
        shared = os.path.commonprefix([prefixes[m][start:] for m in members])
        end = start + len(shared)
        node_index = len(nodes)
        nodes.append(PrefixNode(tokens=tuple(shared), parent=parent, depth=depth))
        rest = []
        for m in members:
            if len(prefixes[m]) == end:
                nodes[node_index].groups.append(m)
                leaf_of_group[m] = node_index
            else:
                rest.append(m)
        for sub in _split_by_next_token(rest, prefixes, end):
            pending.append((sub, end, node_index, depth + 1))
    return PrefixTree(nodes=nodes, leaf_of_group=leaf_of_group)


def _split_by_next_token(members: list[int], prefixes: Sequence[tuple[int, ...]], pos: int) -> list[list[int]]:
    by_token: dict[int, list[int]] = {}
    for m in members:
        by_token.setdefault(prefixes[m][pos], []).append(m)
    return list(by_token.values())
