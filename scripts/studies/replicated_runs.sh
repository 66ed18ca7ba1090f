#!/usr/bin/env bash
# The long CPU runs behind docs/figures/replicated (issue "Verdicts that survive a new seed"), one after another,
# niced, from a worktree pinned at the commit they started with, so that every run uses the same code:
#
#   git worktree add --detach ../pinned 03be46c
#   nohup scripts/studies/replicated_runs.sh ../pinned "$PWD" > replicated_runs.out 2>&1 &
#
# Each finished step's small outputs (csv, md, json, Figs. 6-8) are copied into MAIN/docs/figures/replicated
# and committed there; a step whose outputs are committed is restored from them instead of being run again, so
# the script resumes on another machine. Paths inside PINNED are those of 03be46c (scripts/ before the sort).
set -uo pipefail
P=$(cd "${1:?the pinned worktree}" && pwd)
M=$(cd "${2:?the checkout that receives the results}" && pwd)
D=docs/figures/replicated
LOG=${LOG:-$M/runs/replicated_runs.log}
mkdir -p "$(dirname "$LOG")"
cd "$P"
export PYTHONPATH=$P
py() { nice -n 15 python "$@"; }
say() { echo "$(date -u +%FT%TZ) $*" | tee -a "$LOG"; }
commit() {  # path message
  git -C "$M" add -- "$1"
  if git -C "$M" diff --cached --quiet -- "$1"; then say "nothing new in $1"; return 0; fi
  git -C "$M" commit -q -m "$2" -- "$1" && say "committed $1" || say "COMMIT FAILED $1"
}
copy_small() {  # src dst: csv, md, json and Figs. 6-8, not checkpoints or clustering data
  (cd "$1" && find . \( -name checkpoints -o -name cluster_data \) -prune -o -type f \
     \( -name '*.csv' -o -name '*.md' -o -name '*.json' -o -name 'fig[678]_*.png' -o -name study.png -o -name stability.png \) \
     -print) | while read -r f; do mkdir -p "$2/$(dirname "$f")"; cp -p "$1/$f" "$2/$f"; done
}
train_seed() {  # s
  local s=$1; local w=runs/unseen_seed$s; local t=$M/$D/seed$s
  mkdir -p $w dng_jax/segmentation/weights
  [ -f $t/training/baseline.json ] && cp -n $t/training/*.json $w/ 2>/dev/null
  [ -f $t/weights/cpu_real_unseen_seed$s.npz ] && cp -n $t/weights/cpu_real_unseen_seed$s.* dng_jax/segmentation/weights/
  if [ ! -f $w/baseline.json ]; then
    say "train seed $s"
    py -m dng_jax.train --config configs/cpu_real_unseen.py --workdir $w --config.train.seed=$s --no-progress || { say "train seed $s FAILED"; return 1; }
  fi
  if [ ! -f $w/baseline_tta.json ]; then
    say "score tta seed $s"
    py scripts/score_checkpoint.py --checkpoint $w --tta --output $w/baseline_tta.json || { say "tta seed $s FAILED"; return 1; }
  fi
  if [ ! -f dng_jax/segmentation/weights/cpu_real_unseen_seed$s.npz ]; then
    say "export seed $s"
    py scripts/export_bundled_model.py --workdir $w --name cpu_real_unseen_seed$s --config-file configs/cpu_real_unseen.py \
      --note "python -m dng_jax.train --config configs/cpu_real_unseen.py --workdir $w --config.train.seed=$s" || { say "export seed $s FAILED"; return 1; }
  fi
  mkdir -p $t/training $t/weights
  cp $w/baseline.json $w/baseline_tta.json $t/training/
  cp $w/metrics.csv $t/training/ 2>/dev/null
  cp dng_jax/segmentation/weights/cpu_real_unseen_seed$s.npz dng_jax/segmentation/weights/cpu_real_unseen_seed$s.json $t/weights/
  commit $D/seed$s "replicated baselines: configs/cpu_real_unseen.py trained with seed $s (80 epochs), scored with and without TTA, float16 weights exported"
}
sweep_seed() {  # s
  local s=$1; local w=runs/nested_seed$s
  if [ -f $M/$D/seed$s/sweep/results.csv ]; then say "sweep on seed $s: committed"; return 0; fi
  say "sweep on seed $s"
  py -m dng_jax.sweep --config configs/cpu_real_unseen.py --workdir $w --config.sweep.checkpoint=bundled:cpu_real_unseen_seed$s \
     --config.sweep.ks="(5, 100, 500)" --config.sweep.seeds=4 --config.sweep.seeds_per_chunk=4 --config.sweep.ensemble=0 \
     --no-progress || { say "sweep seed $s exit $?"; return 1; }
  copy_small $w $M/$D/seed$s/sweep
  commit $D/seed$s/sweep "replicated baselines: the paper's sweep (kMC / NG at k = 5, 100, 500, GNG; 4 runs) on the seed-$s training of configs/cpu_real_unseen.py, every per-image score"
}
variants_seed() {  # s
  local s=$1; local w=runs/nested_variants_seed$s
  if [ -f $M/$D/seed$s/variants/study.csv ]; then say "variants on seed $s: committed"; return 0; fi
  say "variants on seed $s"
  py scripts/variants_study.py --config configs/cpu_real_unseen.py --checkpoint bundled:cpu_real_unseen_seed$s \
     --workdir $w --set "sweep.seeds=4,sweep.seeds_per_chunk=4" \
     --row joint:retrain.segmentation_weight=1.0 \
     --row "decoder:retrain.decoder_epochs=2,sweep.seeds=2,sweep.seeds_per_chunk=2" || { say "variants seed $s exit $?"; return 1; }
  copy_small $w $M/$D/seed$s/variants
  commit $D/seed$s/variants "replicated baselines: the joint objective and decoder re-pairing at k = 100 on the seed-$s training of configs/cpu_real_unseen.py, every per-image score"
}
say "start"
train_seed 1 && train_seed 2
sweep_seed 1; sweep_seed 2
variants_seed 1; variants_seed 2
say "all done"
