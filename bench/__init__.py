"""fastcomt's performance harness: the fused LM head against eager PyTorch, torch.compile, Liger-Kernel,
cut-cross-entropy and the GEMM floor, side by side on the same inputs. Entry point: ``bench/run.py``."""
