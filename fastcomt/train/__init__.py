"""Training loops: SFT (`sft.run_sft`, CoMT or CoT targets, packed rows, fused linear CE) and CCRL
(`rl.run_rl`, two-stage rollouts, calibrated rewards, fused policy loss), with their configs,
checkpoints and model builders. Submodules are imported on use (`config` needs no torch)."""
