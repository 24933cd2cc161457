#!/usr/bin/env bash
# One-shot GPU check of the fused LM head, for an H200 with torch 2.11 / triton 3.6 and no package
# registry. Finishes in under 8 minutes, compilation included (estimate in bench/RESULTS.md).
#
#   bash bench/gpu_check.sh OUTDIR [WHEELDIR]
#   GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh OUTDIR [WHEELDIR]   # CPU rehearsal, see below
#
# WHEELDIR holds the wheels of bench/wheels.txt (bench/download_wheels.sh fetches them: packaging,
# Liger, cut-cross-entropy, TRL, verl; ~4 MB). They are installed with --no-deps into /tmp/site,
# which run.py appends *after* site-packages (the machine's torch wins). Without them the peers' rows
# say "unavailable".
#
# 0. preflight (bench/preflight.py): imports, the Triton mode (compiled on CUDA), one real launch of
#    our row kernel against torch. A failure stops the script before any timed minute is spent.
# 1. correctness at the headline shape N=16384, H=3584, V=152064 (Qwen2.5-7B head), every method;
#    --strict fails the script unless fastcomt's dh/dW are within 1e-2 relative L2 of float32 and its
#    log-probs within 2e-2 max abs;
# 2. the default shapes (7B, 8B, 1.5B heads at N=4096..32768), reusing step 1's rows (--resume) and
#    starting nothing new once the time budget is spent (those rows say "skipped: time budget").
#
# Losing nothing: every row is written to results.jsonl the moment it is measured; in each op group
# fastcomt runs last, after the floor and the peers; each measurement has a timeout inside run.py,
# and each step runs under `timeout`: a process killed mid-measurement (a hang inside CUDA) or one
# that exits because the CUDA context broke (exit 75) is rerun with --resume, which skips the rows on
# disk, including the killed one (status "timeout: ...").
#
# Dry run (GPU_CHECK_DRY_RUN=1): the same script on CPU at a tiny shape, with fastcomt made to fail
# (GPU_CHECK_SIMULATE=error, or hang to exercise the timeouts): the floor and the peers' rows must
# still be recorded. tests/test_bench_gpu_check.py runs it.
#
# OUTDIR receives preflight.json, results.jsonl, table.md, plot.png, correctness.md, the logs and
# nvidia-smi.txt.
set -uo pipefail

OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR [WHEELDIR]}
WHEELS=${2:-}
SITE=${GPU_CHECK_SITE:-/tmp/site}
TOTAL_S=${GPU_CHECK_TOTAL_S:-450}  # whole script; leaves 30 s of the 8 minutes for the last measurement
SHAPE=${GPU_CHECK_SHAPE:-16384:3584:152064}
METHOD_TIMEOUT_S=${GPU_CHECK_METHOD_TIMEOUT_S:-120}
DRY=${GPU_CHECK_DRY_RUN:-0}
read -r -a EXTRA <<< "${GPU_CHECK_EXTRA:-}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

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
DEVICE_ARGS=()
STEP2_SHAPES=()
if [ "$DRY" = 1 ]; then
  SHAPE=${GPU_CHECK_SHAPE:-32:32:500}
  DEVICE_ARGS=(--device cpu)
  STEP2_SHAPES=(--shapes "$SHAPE")  # one shape: the rehearsal checks the flow, not the sweep
fi
SITE_ARGS=()
[ -d "$SITE" ] && SITE_ARGS=(--site-dir "$SITE")
ARGS=("${DEVICE_ARGS[@]+"${DEVICE_ARGS[@]}"}" --warmup 2 --method-timeout-s "$METHOD_TIMEOUT_S")
[ "$DRY" = 1 ] && ARGS+=(--reps 3 --simulate-failure "${GPU_CHECK_SIMULATE:-error}")
ARGS+=("${SITE_ARGS[@]+"${SITE_ARGS[@]}"}" ${EXTRA[@]+"${EXTRA[@]}"})
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

echo "== 0/2 preflight"
"$PY" bench/preflight.py "${DEVICE_ARGS[@]+"${DEVICE_ARGS[@]}"}" "${SITE_ARGS[@]+"${SITE_ARGS[@]}"}" \
  > "$OUT/preflight.json" 2> "$OUT/preflight.log"
preflight=$?
cat "$OUT/preflight.json"
[ "$preflight" -eq 0 ] || { echo "preflight failed (see $OUT/preflight.log): nothing measured" >&2; exit 3; }

# run_step LOG BUDGET_S ARGS...: run.py under `timeout`, rerun with --resume after a kill (124) or a
# lost CUDA context (75), while time is left; returns run.py's last exit status.
run_step() {
  local log=$1 budget=$2 rc=0 attempt
  shift 2
  for attempt in 1 2 3 4; do
    local left=$(( TOTAL_S - $(elapsed) ))
    [ "$left" -gt 10 ] || break
    local step_left=$(( budget < left ? budget : left ))
    local resume=()
    [ "$attempt" -gt 1 ] && resume=(--resume)
    timeout --kill-after=10 "$step_left" "$PY" bench/run.py "$@" "${resume[@]+"${resume[@]}"}" \
      --budget-s "$(( step_left > 60 ? step_left - 60 : step_left / 2 ))" >/dev/null 2>> "$log"
    rc=$?
    case $rc in
      124|137|75) echo "run.py exited $rc (attempt $attempt): resuming in a fresh process" | tee -a "$log" ;;
      *) break ;;
    esac
  done
  return $rc
}

echo "== 1/2 correctness at $SHAPE (all methods, --strict)"
run_step "$OUT/correctness.log" "${GPU_CHECK_STEP1_S:-300}" "${ARGS[@]}" --shapes "$SHAPE" --strict \
  --out "$OUT/results.jsonl" --table "$OUT/correctness.md"
correct=$?
tail -n 25 "$OUT/correctness.log"

echo "== 2/2 default shapes, $(( TOTAL_S - $(elapsed) )) s left"
run_step "$OUT/run.log" "$TOTAL_S" "${ARGS[@]}" "${STEP2_SHAPES[@]+"${STEP2_SHAPES[@]}"}" --resume \
  --out "$OUT/results.jsonl" --table "$OUT/table.md" --plot "$OUT/plot.png"
run=$?
tail -n 5 "$OUT/run.log"

# The full table is in table.md; print the parts that fit a terminal.
if [ -f "$OUT/table.md" ]; then
  sed -n '/^targets/,/^$/p' "$OUT/table.md"
  grep -E "^\|(---| shape| ${SHAPE//:/×} )" "$OUT/table.md"
fi
echo "elapsed $(elapsed) s; preflight ok; correctness exit $correct, run exit $run; files in $OUT"
[ "$correct" -eq 0 ] && [ "$run" -eq 0 ]
