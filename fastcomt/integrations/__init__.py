"""Adapters that put fastcomt's fused LM-head kernels and the CCRL reward into other trainers.

- ``fastcomt.integrations.trl``: a drop-in ``GRPOTrainer`` for TRL 1.16.x (change one import);
- ``fastcomt.integrations.verl``: the fused policy loss and the CCRL reward registered with verl 0.9.x;
- ``fastcomt.integrations.fused_head``: a Hugging Face causal LM's head as the differentiable fused
  log-prob (shared by both);
- ``fastcomt.integrations.rewards``: the CCRL reward as a TRL ``reward_funcs`` callable and a verl
  ``compute_score``.

Each adapter imports its peer on import and checks the peer's version there; nothing here is
imported by ``fastcomt`` itself, so the peers stay optional.
"""
