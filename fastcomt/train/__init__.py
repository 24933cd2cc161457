"""Training recipes: SFT (`sft.run_sft`) on CoMT or CoT data, with packing, fused-loss training,
atomic checkpoints and exact resume. Submodules are imported on use (`config` needs no torch)."""
