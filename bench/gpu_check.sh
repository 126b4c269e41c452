#!/usr/bin/env bash
# bench/gpu_check.sh: the prepared device check of issue 5 (at most 8 minutes on one H100/H200).
#
# What it runs, in this order (most needed first), writing JSON flat into $OUT (default
# results/speed/gpu_check, which `bench table` skips):
#   1. `python -m bench.cost.speed` (= `python -m bench speed`) for all nine methods under their
#      paper budgets at 84 px, mini-ImageNet 5-way 5-shot shapes (Table 4's), in bf16 and then
#      fp32 (10 timed steps after 3 warm-up, 10 validation episodes):
#      <device>-<precision>-84-mini-5w5s.json;
#   2. the rest of Table 3's training-step shapes in bf16 for its six methods, shorter (5
#      timed steps after 2 warm-up, 5 validation episodes): mini 1-shot, tiered-ImageNet 1-
#      and 5-shot (84 px), CIFAR-FS and FC100 1- and 5-shot (32 px);
#   3. `python -m bench.cost.solver_bench`: the batched episode solver against scikit-learn on 2000
#      5-way 5-shot 640-d episodes: solver.json;
#   4. if at least 120 s are left: MTL with --compile at 84 px bf16 (at most 150 s):
#      <device>-bf16-84-mini-5w5s-compile.json, with the graphs dynamo compiled while timed
#      (0 expected: the warm-up goes on until a step compiles nothing);
#   5. `python -m bench plan` of the whole Table 3 (six methods x mini, tiered, CIFAR-FS, FC100
#      x 1 and 5 shots x 3 seeds, paper budgets, bf16) from the reports of 1 and 2, saved in
#      $OUT/table3/plans/plan.json: whether Table 3 fits in 24 GPU-hours;
#   and gpu_check.log with everything printed (nvidia-smi, versions, tables).
# Every step runs under `timeout` (caps below) so the whole script ends by 470 s
# (DEADLINE_S), 30 s of which are kept for the plan; a step cut short leaves no JSON and says
# so in the log. A method that fails (say, out of memory) costs its row in the JSON, not the
# step.
#
# How to run it, from the repository root:
#   device tool: run(command="bash bench/gpu_check.sh", timeout_s=560,
#                    carry=[".venv/lib/python3.11/site-packages/qpth"])
#   any machine: OUT=/tmp/gpu_check bash bench/gpu_check.sh
#   CPU dry run: bash bench/gpu_check.sh --cpu-dry-run   (tiny shapes, checks the plumbing only;
#                the numbers mean nothing; the step shapes of 2 with MTL alone, every cap
#                tripled for a slow shared CPU, and the plan matches none of its reports,
#                whose shapes are not the paper's)
#
# Python: $PYTHON if set, else .venv/bin/python if it imports torch, else python3 (the device
# image's python3 holds torch, numpy, scikit-learn, pandas and matplotlib). The project's .venv
# (6 GB) cannot travel to the device (64 MiB limit), so only qpth is carried. qpth imports
# cvxpy at import time for an optional solver MetaOptNet does not use, and the device image has
# no cvxpy: when `import qpth` fails, the script copies the carried qpth into a temporary folder
# whose solvers/__init__.py tolerates a missing cvxpy, and puts it first on PYTHONPATH. Nothing
# is installed and nothing is fetched from the network.
set -uo pipefail

DRY_RUN=0
case "${1:-}" in
  --cpu-dry-run) DRY_RUN=1 ;;
  "") ;;
  -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
  *) echo "error: unknown argument '$1' (expected nothing or --cpu-dry-run)" >&2; exit 2 ;;
esac

if [ ! -f bench/cost/speed.py ]; then
  echo "error: run this from the repository root (bench/cost/speed.py not found in $(pwd))" >&2
  exit 2
fi

OUT="${OUT:-results/speed/gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
export PYTHONUNBUFFERED=1
START=$(date +%s)
# The CPU dry run takes the same steps on a slow, shared CPU: three times each cap.
if [ "$DRY_RUN" = 1 ]; then SLOW=3; else SLOW=1; fi
DEADLINE_S="${DEADLINE_S:-$(( 470 * SLOW ))}"

log() { echo "$@" | tee -a "$LOG"; }
remaining() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }

# ---- Python and qpth ------------------------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  PY=.venv/bin/python
else
  PY=python3
fi
if ! "$PY" -c "import torch, numpy, sklearn, pandas" 2>>"$LOG"; then
  log "error: $PY cannot import torch, numpy, scikit-learn and pandas; set PYTHON to an"
  log "interpreter that can (the project's dependencies are listed in pyproject.toml)"
  exit 2
fi
if ! "$PY" -c "import qpth.qp" 2>/dev/null; then
  SRC=$(ls -d .venv/lib/python3*/site-packages/qpth 2>/dev/null | head -n 1)
  if [ -z "$SRC" ]; then
    log "error: qpth is not importable and no carried copy was found under"
    log ".venv/lib/python3*/site-packages/qpth; carry that folder (see the header)"
    exit 2
  fi
  SITE=$(mktemp -d /tmp/bridgebench-site.XXXXXX)
  cp -r "$SRC" "$SITE/qpth"
  "$PY" - "$SITE/qpth/solvers/__init__.py" <<'PYEOF'
import pathlib
import sys

path = pathlib.Path(sys.argv[1])
text = path.read_text()
path.write_text(text.replace(
    "from . import cvxpy",
    "try:\n    from . import cvxpy\nexcept ImportError:  # optional; MetaOptNet uses pdipm\n"
    "    cvxpy = None"))
PYEOF
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$PY" -c "import qpth.qp" 2>>"$LOG"; then
    log "error: qpth from $SRC still does not import (see $LOG)"
    exit 2
  fi
  log "qpth: carried copy from $SRC (cvxpy import made optional) in $SITE"
fi

# ---- Settings --------------------------------------------------------------------------------
ALL_METHODS=mtl,anil,maml,r2d2,metaoptnet,protonet,rfs,imaml,minibatchprox
TABLE3_METHODS=mtl,anil,maml,r2d2,metaoptnet,protonet  # the paper's Table 3/4 methods
PLAN_RESERVE_S=$(( 30 * SLOW ))  # kept for `bench plan`, the last step
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  TINY=(--backbone conv4-32 --meta-batch 1 --val-episodes 1)
  MAIN_ARGS=(--methods "$ALL_METHODS" "${TINY[@]}" --steps 1 --warmup 1)
  SHAPE_ARGS=(--methods mtl "${TINY[@]}" --steps 1 --warmup 0)
  SOLVER_ARGS=(--episodes 40 --jobs 2)
  log "CPU dry run: tiny shapes (conv4-32, meta-batch 1, 1 step); the numbers mean nothing"
else
  DEVICE=cuda
  MAIN_ARGS=(--methods "$ALL_METHODS" --steps 10 --warmup 3 --val-episodes 10)
  SHAPE_ARGS=(--methods "$TABLE3_METHODS" --steps 5 --warmup 2 --val-episodes 5)
  SOLVER_ARGS=(--episodes 2000 --jobs -1)
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "error: no CUDA device visible to $PY; use --cpu-dry-run on a machine without a GPU"
    exit 2
  fi
fi

{
  echo "== environment"
  date -u +%Y-%m-%dT%H:%M:%SZ
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import sys, torch, numpy, sklearn; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| numpy', numpy.__version__, '| scikit-learn', sklearn.__version__)"
  nproc
} 2>&1 | tee -a "$LOG"

FAILED=0
step() {  # step NAME MIN_SECONDS MAX_SECONDS COMMAND...: run under min(remaining, MAX)
  local name="$1" need="$2" most=$(( $3 * SLOW )); shift 3
  local left
  left=$(remaining)
  if [ "$left" -lt "$need" ]; then
    log "== $name: SKIPPED, only ${left}s left (needs about ${need}s)"
    FAILED=1
    return
  fi
  log "== $name ($(( $(date +%s) - START ))s elapsed, ${left}s left)"
  if [ "$left" -gt "$most" ]; then left="$most"; fi
  timeout --signal=INT --kill-after=10 "$left" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    FAILED=1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ]; then
      log "== $name: STOPPED at the deadline (exit $rc); no JSON from this step"
    else
      log "== $name: FAILED (exit $rc)"
    fi
  fi
}
measure() {  # measure NEED MOST DATASET SHOTS PRECISION ARGS...: one bench speed report
  local need="$1" most="$2" dataset="$3" shots="$4" precision="$5"; shift 5
  step "speed $dataset 5-way $shots-shot $precision" "$need" "$most" "$PY" -m bench.cost.speed \
    --device "$DEVICE" --dataset "$dataset" --ways 5 --shots "$shots" --precision "$precision" \
    "$@" --out "$OUT"
}

# 1. All nine methods at Table 4's shapes (mini-ImageNet 5-way 5-shot, 84 px), bf16 and fp32.
DEADLINE_S=$(( DEADLINE_S - PLAN_RESERVE_S ))
measure 30 110 mini 5 bf16 "${MAIN_ARGS[@]}"
measure 30 110 mini 5 fp32 "${MAIN_ARGS[@]}"
# 2. The rest of Table 3's shapes, bf16, the six methods (what `bench plan` projects from).
for SHAPE in "mini 1" "tiered 1" "tiered 5" "cifar-fs 1" "cifar-fs 5" "fc100 1" "fc100 5"; do
  read -r DATASET SHOTS <<< "$SHAPE"
  measure 15 45 "$DATASET" "$SHOTS" bf16 "${SHAPE_ARGS[@]}"
done
# 3. The unified protocol's solvers.
step "solver: batched vs scikit-learn" 20 60 "$PY" -m bench.cost.solver_bench --device "$DEVICE" \
  "${SOLVER_ARGS[@]}" --out "$OUT/solver.json"
# 4. MTL compiled (steady-state steps only: bench speed warms up until nothing compiles).
if [ "$DRY_RUN" = 1 ]; then
  log "== compile: skipped in the CPU dry run"
else
  measure 120 150 mini 5 bf16 --methods mtl --compile --steps 10 --warmup 3 --val-episodes 0
fi
# 5. Table 3's cost from the reports above.
DEADLINE_S=$(( DEADLINE_S + PLAN_RESERVE_S ))
step "plan: Table 3 (6 methods x 4 datasets x 1/5 shots x 3 seeds), bf16" 10 30 \
  "$PY" -m bench plan --methods "$TABLE3_METHODS" --dataset mini,tiered,cifar-fs,fc100 \
  --ways 5 --shots 1,5 --seeds 0,1,2 --budget paper --precision bf16 --device "$DEVICE" \
  --speed-reports "$OUT" --out "$OUT/table3"

log "== done in $(( $(date +%s) - START ))s; files in $OUT:"
ls -l "$OUT" | tee -a "$LOG"
exit "$FAILED"
