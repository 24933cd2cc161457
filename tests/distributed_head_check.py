"""One rank of the sharded-LM-head check (run by tests/test_distributed_head.py under torchrun).

Writes, from rank 0, the loss / dh / dW of: the fused cross-entropy on an FSDP2-sharded head weight
(each rank half of the tokens); the vocabulary-parallel log-probs, cross-entropy and policy loss
(each rank half of the vocabulary, all the tokens). Inputs are rebuilt from `inputs()` on every rank
and in the test, which computes the single-process results itself.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

B, T, H, V = 2, 6, 16, 50


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    hidden = torch.randn(B, T, H, generator=g)
    weight = 0.3 * torch.randn(V, H, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) > 0.25
    mask[:, 0] = True
    advantages = torch.tensor([0.8, -0.6])
    old = -3.5 + 0.3 * torch.randn(B, T, generator=g)
    ref = -3.5 + 0.3 * torch.randn(B, T, generator=g)
    behaviour = -3.5 + 0.3 * torch.randn(B, T, generator=g)
    return dict(
        hidden=hidden,
        weight=weight,
        targets=targets,
        mask=mask,
        advantages=advantages,
        old=old,
        ref=ref,
        behaviour=behaviour,
    )


POLICY = dict(loss_type="dapo", eps_low=0.2, eps_high=0.28, beta=0.05, tis_cap=2.0, entropy_coef=0.01, temperature=0.9)


def fsdp_sharded_head(x: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from fastcomt.distributed import gathered_head_weight
    from fastcomt.kernels import linear_cross_entropy

    head = torch.nn.Module()
    head.weight = torch.nn.Parameter(x["weight"].clone())
    fully_shard(head, mesh=init_device_mesh("cpu", (world,)))
    assert type(head.weight).__name__ == "DTensor"
    h = x["hidden"].reshape(-1, H)
    t = torch.where(x["mask"], x["targets"], -100).reshape(-1)
    mine = torch.arange(h.shape[0]).tensor_split(world)[rank]
    h_local = h[mine].clone().requires_grad_(True)
    n_active = int((t != -100).sum())
    loss = linear_cross_entropy(h_local, gathered_head_weight(head.weight), t[mine], reduction="sum") / n_active
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    dh = [torch.empty(len(r), H) for r in torch.arange(h.shape[0]).tensor_split(world)]
    dist.all_gather(dh, h_local.grad.contiguous())
    return {"loss": total, "dh": torch.cat(dh).reshape(B, T, H), "dw": head.weight.grad.full_tensor()}


def vocab_parallel(x: dict[str, torch.Tensor], rank: int, world: int, use_kernel: bool) -> dict[str, torch.Tensor]:
    from fastcomt.distributed.vocab_parallel import (
        vocab_parallel_cross_entropy,
        vocab_parallel_logprobs,
        vocab_parallel_policy_loss,
    )

    rows = torch.arange(V).tensor_split(world)
    start = int(rows[rank][0])
    out: dict[str, torch.Tensor] = {}

    def gather_dw(grad: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty(len(r), H) for r in rows]
        dist.all_gather(parts, grad.contiguous())
        return torch.cat(parts)

    w_local = x["weight"][rows[rank]].clone()
    logp, entropy, maxprob = vocab_parallel_logprobs(
        x["hidden"],
        w_local,
        x["targets"],
        vocab_start=start,
        temperature=0.9,
        mask=x["mask"],
        use_kernel=use_kernel,
        chunk_rows=5,
    )
    out.update(logp=logp, entropy=entropy, maxprob=maxprob)

    h = x["hidden"].clone().requires_grad_(True)
    w = w_local.clone().requires_grad_(True)
    ce = vocab_parallel_cross_entropy(
        h, w, torch.where(x["mask"], x["targets"], -100), vocab_start=start, use_kernel=use_kernel, chunk_rows=5
    )
    ce.backward()
    out.update(ce=ce.detach(), ce_dh=h.grad, ce_dw=gather_dw(w.grad))

    h = x["hidden"].clone().requires_grad_(True)
    w = w_local.clone().requires_grad_(True)
    loss, metrics = vocab_parallel_policy_loss(
        h,
        w,
        x["targets"],
        x["mask"],
        x["advantages"],
        x["old"],
        vocab_start=start,
        ref_logprobs=x["ref"],
        behaviour_logprobs=x["behaviour"],
        use_kernel=use_kernel,
        chunk_rows=5,
        **POLICY,
    )
    loss.backward()
    out.update(policy=loss.detach(), policy_dh=h.grad, policy_dw=gather_dw(w.grad), policy_kl=metrics["kl"])
    return out


def main() -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    x = inputs()
    results = {"fsdp": fsdp_sharded_head(x, rank, world)}
    for use_kernel in (False, True):
        results[f"vocab_parallel_kernel={use_kernel}"] = vocab_parallel(x, rank, world, use_kernel)
    if rank == 0:
        torch.save(results, sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
