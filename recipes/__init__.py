"""fastcomt_recipes: end-to-end programs built on the fastcomt library (installed from recipes/).

- `demo`: `fastcomt demo`, the paper's pipeline at toy scale on CPU (what it shows: DEMO.md);
- `pretrain`: stage 0 of the demo, a tiny base model that executes plans (`fastcomt pretrain`);
- `replay`: the execution documents the demo's SFT rehearses, written as an SFT data file;
- `kernels_smoke`: every fused LM-head function against its plain-torch reference (`fastcomt demo --kernels-smoke`).
"""

# fastcomt sets TRITON_INTERPRET on a machine without a GPU; it must happen before torch or
# transformers import triton, so the recipes import it first.
import fastcomt  # noqa: E402, F401
