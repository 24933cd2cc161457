"""The seeded sampler and the prefix radix tree, against published values and hand-built cases."""

from __future__ import annotations

import random

import torch

from fastcomt.rollout.prefix_tree import build_prefix_tree
from fastcomt.rollout.sampling import sample_next_tokens, sampled_logprobs_and_support, splitmix64_uniform


def test_uniforms_follow_the_published_splitmix64_sequence():
    # The first outputs of SplitMix64 seeded with 1234567 (Vigna's reference generator).
    published = [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]
    for step, value in enumerate(published):
        assert splitmix64_uniform(1234567, step) == (value >> 11) / 2.0**53


def _reference_support(logits: list[float], temperature: float, top_k: int, top_p: float) -> set[int]:
    """Plain-Python fp64 support: top-k by probability (ties by id), then the smallest head of the
    renormalised distribution whose mass reaches top_p."""
    import math

    scaled = [x / temperature for x in logits]
    m = max(scaled)
    probs = [math.exp(x - m) for x in scaled]
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    if top_k > 0:
        order = order[:top_k]
    mass = sum(probs[i] for i in order)
    kept, acc = set(), 0.0
    for i in order:
        if acc >= top_p:
            break
        kept.add(i)
        acc += probs[i] / mass
    return kept


def test_support_matches_a_plain_python_reference():
    rng = random.Random(0)
    rows, params = [], []
    for _ in range(40):
        rows.append([rng.gauss(0, 2) for _ in range(30)])
        params.append((rng.choice([0.5, 1.0, 1.7]), rng.choice([0, 1, 3, 10]), rng.choice([0.3, 0.8, 1.0])))
    logits = torch.tensor(rows)
    temperature = torch.tensor([p[0] for p in params])
    top_k = torch.tensor([p[1] for p in params])
    top_p = torch.tensor([p[2] for p in params])
    _, kept = sampled_logprobs_and_support(logits, temperature, top_k, top_p)
    for r, (t, k, p) in enumerate(params):
        got = {j for j in range(30) if kept[r, j]}
        assert got == _reference_support(rows[r], t, k, p)


def test_draws_stay_in_support_and_greedy_takes_the_argmax():
    torch.manual_seed(0)
    logits = torch.randn(64, 50) * 3
    temperature = torch.tensor([0.0 if i % 4 == 0 else 0.9 for i in range(64)])
    top_k = torch.tensor([i % 7 for i in range(64)])
    top_p = torch.tensor([0.5 + 0.5 * (i % 2) for i in range(64)])
    uniforms = torch.rand(64, dtype=torch.float64)
    tokens, logprobs = sample_next_tokens(logits, temperature, top_k, top_p, uniforms)
    _, kept = sampled_logprobs_and_support(logits, temperature, top_k, top_p)
    for r in range(64):
        support = {j for j in range(50) if kept[r, j]}
        assert int(tokens[r]) in support
        if temperature[r] == 0:
            assert int(tokens[r]) == int(logits[r].argmax())
        scale = float(temperature[r]) if temperature[r] > 0 else 1.0
        ref = torch.log_softmax(logits[r].double() / scale, dim=-1)[tokens[r]]
        assert abs(float(logprobs[r]) - float(ref)) < 1e-5


def test_inverse_cdf_picks_the_bucket_holding_the_uniform():
    # Probabilities 0.3, 0.2, 0.5: the CDF in vocabulary order is 0.3, 0.5, 1.0.
    logits = torch.log(torch.tensor([[0.3, 0.2, 0.5]] * 5))
    uniforms = torch.tensor([0.0, 0.29, 0.31, 0.49, 0.95], dtype=torch.float64)
    ones = torch.ones(5)
    tokens, _ = sample_next_tokens(logits, ones, torch.zeros(5, dtype=torch.long), ones, uniforms)
    assert tokens.tolist() == [0, 0, 1, 1, 2]
    # With top-k = 2 token 1 leaves the support: mass 0.5 and 0.3 renormalised, CDF 0.375, 0.375, 1.
    tokens, _ = sample_next_tokens(logits, ones, torch.full((5,), 2), ones, uniforms)
    assert tokens.tolist() == [0, 0, 0, 2, 2]


def test_prefix_tree_structure_by_hand():
    a = (1, 2, 3, 4, 5)
    b = (1, 2, 3, 9)
    c = (1, 2, 3, 4, 5)  # same as a
    d = (7, 8)
    e = (1, 2)  # ends inside the shared span
    tree = build_prefix_tree([a, b, c, d, e])
    spans = sorted(n.tokens for n in tree.nodes)
    assert spans == [(1, 2), (3,), (4, 5), (7, 8), (9,)]
    node_of = {tree.nodes[i].tokens: i for i in range(len(tree.nodes))}
    assert tree.leaf_of_group == [node_of[(4, 5)], node_of[(9,)], node_of[(4, 5)], node_of[(7, 8)], node_of[(1, 2)]]
    assert [tree.nodes[i].tokens for i in tree.path(tree.leaf_of_group[0])] == [(1, 2), (3,), (4, 5)]
    assert {tree.nodes[i].tokens for i in tree.levels()[0]} == {(1, 2), (7, 8)}
    computed = tree.computed_tokens_per_sample([2, 1, 3, 1, 2])
    # a charges (1,2),(3,),(4,5); b charges (9,); c nothing; d charges (7,8); e nothing.
    assert computed == [[5, 0], [1], [0, 0, 0], [2], [0, 0]]
    assert sum(map(sum, computed)) == 2 + 1 + 2 + 2 + 1  # every span once
