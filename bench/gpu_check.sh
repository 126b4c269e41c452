#!/usr/bin/env bash
# bench/gpu_check.sh: the prepared device check of issue 5 (at most 8 minutes on one H100/H200).
#
# What it runs, writing JSON flat into $OUT (default results/speed/gpu_check, which
# `bench table` skips):
#   1. `python -m bench.speed` (= `python -m bench speed`) for the paper's six methods (named,
#      so the methods added later do not push a step past its time cap) under their
#      paper budgets, at 84 px (mini-ImageNet shapes) and 32 px (CIFAR-FS shapes), in fp32 and
#      bf16: four files <device>-<precision>-<size>-<dataset>-<ways>w<shots>s.json;
#   2. `python -m bench.solver_bench`: the batched episode solver against scikit-learn on 2000
#      5-way 5-shot 640-d episodes: solver.json;
#   3. if at least 150 s are left: MTL with --compile at 84 px bf16 (at most 180 s):
#      <device>-bf16-84-mini-5w<shots>s-compile.json, which says whether dynamo recompiled during the timed
#      steps (it does, every step, while ResNet-12's DropBlock schedule is a Python int);
#   and gpu_check.log with everything printed (nvidia-smi, versions, tables).
# Every step runs under `timeout` (at most 150 s per speed run, 120 s for the solver) so the
# whole script ends by 470 s (DEADLINE_S); a step cut short leaves no JSON and says so in the
# log. A method that fails (say, out of memory) costs its row in the JSON, not the step.
#
# How to run it, from the repository root:
#   device tool: run(command="bash bench/gpu_check.sh", timeout_s=560,
#                    carry=[".venv/lib/python3.11/site-packages/qpth"])
#   any machine: OUT=/tmp/gpu_check bash bench/gpu_check.sh
#   CPU dry run: bash bench/gpu_check.sh --cpu-dry-run   (tiny shapes, checks the plumbing only;
#                the numbers mean nothing)
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
  -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
  *) echo "error: unknown argument '$1' (expected nothing or --cpu-dry-run)" >&2; exit 2 ;;
esac

if [ ! -f bench/speed.py ]; then
  echo "error: run this from the repository root (bench/speed.py not found in $(pwd))" >&2
  exit 2
fi

OUT="${OUT:-results/speed/gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
export PYTHONUNBUFFERED=1
START=$(date +%s)
DEADLINE_S="${DEADLINE_S:-470}"

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
PAPER_METHODS=mtl,anil,maml,r2d2,metaoptnet,protonet  # the paper's Table 3/4 methods
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  SPEED_ARGS=(--methods "$PAPER_METHODS" --backbone conv4-32 --meta-batch 1 --steps 1 --warmup 1)
  SOLVER_ARGS=(--episodes 40 --jobs 2)
  log "CPU dry run: tiny shapes (conv4-32, meta-batch 1, 1 step); the numbers mean nothing"
else
  DEVICE=cuda
  SPEED_ARGS=(--methods "$PAPER_METHODS" --steps 20 --warmup 5)
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
  local name="$1" need="$2" most="$3"; shift 3
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

for SIZE in 84 32; do
  if [ "$SIZE" = 84 ]; then DATASET=mini; else DATASET=cifar-fs; fi
  for PRECISION in fp32 bf16; do
    step "speed $SIZE px $PRECISION" 30 150 "$PY" -m bench.speed --device "$DEVICE" \
      --dataset "$DATASET" --image-size "$SIZE" --precision "$PRECISION" \
      "${SPEED_ARGS[@]}" --out "$OUT"
  done
done

step "solver: batched vs scikit-learn" 30 120 "$PY" -m bench.solver_bench --device "$DEVICE" \
  "${SOLVER_ARGS[@]}" --out "$OUT/solver.json"

if [ "$DRY_RUN" = 1 ]; then
  log "== compile: skipped in the CPU dry run"
else
  step "speed 84 px bf16, MTL compiled" 150 180 "$PY" -m bench.speed --device "$DEVICE" \
    --methods mtl --dataset mini --image-size 84 --precision bf16 --compile \
    "${SPEED_ARGS[@]}" --out "$OUT"
fi

log "== done in $(( $(date +%s) - START ))s; files in $OUT:"
ls -l "$OUT" | tee -a "$LOG"
exit "$FAILED"
