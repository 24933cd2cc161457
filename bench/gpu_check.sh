#!/usr/bin/env bash
# One-shot GPU check of the fused LM head, for an H200 with torch 2.11 / triton 3.6 and no package
# registry. Finishes in under 8 minutes (estimate in bench/RESULTS.md, "GPU check").
#
#   bash bench/gpu_check.sh OUTDIR [WHEELDIR]
#
# WHEELDIR (optional) holds the liger-kernel and cut-cross-entropy wheels; they are installed with
# --no-deps into /tmp/site, which run.py appends *after* site-packages (the machine's torch wins).
# Without them the peers' rows say "unavailable".
#
# 1. correctness at the headline shape N=16384, H=3584, V=152064 (Qwen2.5-7B head), every method;
#    --strict fails the script unless fastcomt's dh/dW are within 1e-2 relative L2 of float32 and its
#    log-probs within 2e-2 max abs;
# 2. the default shapes (7B, 8B, 1.5B heads at N=4096..32768), reusing step 1's rows (--resume) and
#    starting nothing new once the time budget is spent (those rows say "skipped: time budget").
#
# OUTDIR receives results.jsonl, table.md, plot.png, correctness.md, the logs and nvidia-smi.txt.
set -uo pipefail

OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR [WHEELDIR]}
WHEELS=${2:-}
SITE=/tmp/site
TOTAL_S=${GPU_CHECK_TOTAL_S:-450}  # whole script; leaves 30 s of the 8 minutes for the last measurement
SHAPE=${GPU_CHECK_SHAPE:-16384:3584:152064}
# Extra run.py arguments for both steps; a dry run of this script on CPU:
#   GPU_CHECK_SHAPE=32:32:500 GPU_CHECK_EXTRA="--device cpu --reps 3" bash bench/gpu_check.sh /tmp/gc
read -r -a EXTRA <<< "${GPU_CHECK_EXTRA:-}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
start=$(date +%s)

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then PY=$candidate; break; fi
  done
fi
[ -n "$PY" ] || { echo "no python with torch found (set PYTHON=...)" >&2; exit 2; }

if [ -n "$WHEELS" ]; then
  "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl \
    || echo "wheel install failed: the peers' rows will say unavailable" >&2
fi
ARGS=(--warmup 2 --reps 10)
[ -d "$SITE" ] && ARGS+=(--site-dir "$SITE")
ARGS+=(${EXTRA[@]+"${EXTRA[@]}"})
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

echo "== 1/2 correctness at $SHAPE (all methods, --strict)"
"$PY" bench/run.py "${ARGS[@]}" --shapes "$SHAPE" --strict --budget-s "${GPU_CHECK_STEP1_S:-300}" \
  --out "$OUT/results.jsonl" --table "$OUT/correctness.md" > /dev/null 2> "$OUT/correctness.log"
correct=$?
tail -n 25 "$OUT/correctness.log"

left=$(( TOTAL_S - ($(date +%s) - start) ))
echo "== 2/2 default shapes, ${left} s left"
"$PY" bench/run.py "${ARGS[@]}" --resume --budget-s "$(( left > 60 ? left - 60 : 0 ))" \
  --out "$OUT/results.jsonl" --table "$OUT/table.md" --plot "$OUT/plot.png" > /dev/null 2> "$OUT/run.log"
run=$?
tail -n 5 "$OUT/run.log"

# The full table is in table.md; print the parts that fit a terminal.
sed -n '/^targets/,/^$/p' "$OUT/table.md"
grep -E "^\|(---| shape| ${SHAPE//:/×} )" "$OUT/table.md"
echo "elapsed $(( $(date +%s) - start )) s; correctness exit $correct, run exit $run; files in $OUT"
[ "$correct" -eq 0 ] && [ "$run" -eq 0 ]
