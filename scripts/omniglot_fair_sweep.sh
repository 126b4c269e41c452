#!/usr/bin/env bash
# Issue 22's fair Omniglot comparison (docs/findings.md), resumable: run it again after any
# stop and it goes on where it was (finished trials and runs are kept, a killed trial or run
# starts again). Run it from a git worktree pinned at one commit, so later code cannot change
# the numbers of a sweep in progress:
#   git worktree add ../sweep <commit> --detach && cd ../sweep
#   bash scripts/omniglot_fair_sweep.sh OMNIGLOT_DIR [OUT] [STAGE] [UNTUNED_OUT]
# OMNIGLOT_DIR holds images_background_small1.zip and images_background_small2.zip.
# OUT (default docs/results/omniglot) gets the studies and the tuned runs; UNTUNED_OUT (default
# OUT-untuned) the runs with the budget's own recipe. Two folders, two sets of tables: each
# comparison with MTL is then tuned against tuned, or untuned against untuned, and Holm's
# correction counts only those comparisons.
# STAGE (default all = tune1, runs1, runs5, table): tune1 | tune5 | runs1 | runs5 | table | all.
# Every process is single-threaded; --jobs 2 keeps two cores busy.
set -euo pipefail
DATA=${1:?usage: scripts/omniglot_fair_sweep.sh OMNIGLOT_DIR [OUT] [STAGE] [UNTUNED_OUT]}
OUT=${2:-docs/results/omniglot}
STAGE=${3:-all}
UNTUNED_OUT=${4:-${OUT%/}-untuned}
METHODS=${METHODS:-mtl,metaoptnet,protonet,r2d2,anil,rfs,maml}
SEEDS=${SEEDS:-0,1,2,3,4}
TRIALS=${TRIALS:-16}
export OMP_NUM_THREADS=1
DATA_ARGS=(--dataset omniglot --data-root "$DATA")
COMMON=("${DATA_ARGS[@]}" --out "$OUT")
UNTUNED=("${DATA_ARGS[@]}" --out "$UNTUNED_OUT")

stage() { [[ "$STAGE" == all || "$STAGE" == "$1" ]]; }

# 1. The same 16-trial search for every method, on validation only (1-shot first: the largest gap).
if stage tune1; then
    python -m bench tune --methods "$METHODS" "${COMMON[@]}" --shots 1 --trials "$TRIALS" --jobs 2
fi
# 5-shot studies are not part of `all`: by default the 5-shot runs reuse each method's 1-shot
# study (issue 22 allows it; 16 more trials per method did not fit the CPU time). Run this stage
# by name to have them; the 5-shot runs then take a method's own 5-shot study where it exists.
if [[ "$STAGE" == tune5 ]]; then
    python -m bench tune --methods "$METHODS" "${COMMON[@]}" --shots 5 --trials "$TRIALS" --jobs 2
fi
# 2. Five seeds of each method with its tuned settings, and untuned (the budget's own recipe).
if stage runs1; then
    python -m bench run --methods "$METHODS" "${COMMON[@]}" --shots 1 --budget long \
    --seeds "$SEEDS" --tuned "$OUT/tuned" --jobs 2
    python -m bench run --methods "$METHODS" "${UNTUNED[@]}" --shots 1 --budget long \
    --seeds "$SEEDS" --jobs 2
fi
if stage runs5; then
    # one command per method: --tuned FILE applies one study, at any shot count
    for method in ${METHODS//,/ }; do
        study="$OUT/tuned/${method}_omniglot_5w5s.json"
        [[ -f "$study" ]] || study="$OUT/tuned/${method}_omniglot_5w1s.json"
        python -m bench run --methods "$method" "${COMMON[@]}" --shots 5 --budget long \
        --seeds "$SEEDS" --tuned "$study" --jobs 2
    done
    python -m bench run --methods "$METHODS" "${UNTUNED[@]}" --shots 5 --budget long \
    --seeds "$SEEDS" --jobs 2
fi
# 3. The tables behind docs/findings.md (accuracy, comparison with Holm's correction, cost,
#    tuning cost).
if stage table; then
    python -m bench table "$OUT"
    python -m bench table "$UNTUNED_OUT"
fi
