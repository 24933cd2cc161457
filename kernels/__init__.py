"""Fused LM-head Triton kernels (installed as fastcomt.kernels)."""
