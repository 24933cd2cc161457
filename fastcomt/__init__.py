"""fastcomt: CoMT supervised fine-tuning and CCRL reinforcement learning on fused LM-head kernels."""

__version__ = "0.1.0"
