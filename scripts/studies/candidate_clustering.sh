#!/usr/bin/env bash
# Clustering on top of the screening's candidate (issue "A shipped model clearly above the classical pipeline",
# item 6): on each of two of its full-length trainings (scripts/studies/candidate_runs.sh, their float16
# weights), the paper's step (kMC and NG at k = 100 and 500) and the joint objective (k = 100), 4 runs each,
# as one variants study per training, one after another, niced, from a pinned worktree:
#
#   nohup scripts/studies/candidate_clustering.sh ../pinned_candidate "$PWD" NAME SETTINGS > clustering.out 2>&1 &
#
# NAME and SETTINGS as given to candidate_runs.sh (the sweeps' config carries them: model.* must match the weights).
# Each study's small outputs (csv, md, json, figures) go to
# MAIN/docs/figures/generalise/candidate/NAME/clustering/seed<S> and are committed; a committed study is
# skipped, so the script resumes on another machine. Then the two are combined at the run level (the trainings
# as top units: claims about clustering on top of a U-Net trained this way) into .../clustering/nested/<row>.
set -uo pipefail
P=$(cd "${1:?the pinned worktree}" && pwd)
M=$(cd "${2:?the checkout that receives the results}" && pwd)
NAME=${3:?the candidate name}
SETTINGS=${4:?the candidate settings, as given to candidate_runs.sh}
D=docs/figures/generalise/candidate/$NAME/clustering
LOG=${LOG:-$M/runs/candidate_clustering.log}
mkdir -p "$(dirname "$LOG")"
cd "$P"
export PYTHONPATH=$P
py() { nice -n 15 python "$@"; }
say() { echo "$(date -u +%FT%TZ) $*" | tee -a "$LOG"; }
copy_small() {  # src dst: csv, md, json and figures, not checkpoints or clustering data
  (cd "$1" && find . \( -name checkpoints -o -name cluster_data \) -prune -o -type f \
     \( -name '*.csv' -o -name '*.md' -o -name '*.json' -o -name 'fig[678]_*.png' -o -name study.png -o -name stability.png \) \
     -print) | while read -r f; do mkdir -p "$2/$(dirname "$f")"; cp -p "$1/$f" "$2/$f"; done
}
say "start clustering on $NAME at $(git -C "$P" rev-parse --short HEAD)"
for s in ${SEEDS:-1 2}; do
  t=$M/$D/seed$s; weights=$M/docs/figures/generalise/candidate/$NAME/seed$s/candidate_${NAME}_seed$s.npz
  if [ -f "$t/study.csv" ]; then say "seed $s: committed"; continue; fi
  [ -f "$weights" ] || { say "seed $s: no weights at $weights (run candidate_runs.sh first)"; exit 1; }
  w=runs/candidate_clustering/$NAME/seed$s; mkdir -p "$(dirname "$w")"
  say "seed $s: variants study"
  py -m dng_jax.variants --config configs/cpu_real_unseen.py --checkpoint "$weights" --workdir "$w" \
    --set "$SETTINGS,sweep.seeds=4,sweep.seeds_per_chunk=4" --row "paper:sweep.ks=(100, 500)" \
    --row "joint:retrain.segmentation_weight=1.0" --no-progress > "$w.log" 2>&1 \
    || { say "seed $s: study FAILED (see $P/$w.log)"; exit 1; }
  copy_small "$w" "$t"
  git -C "$M" add -- "$D/seed$s"
  git -C "$M" commit -q -m "candidate $NAME (issue 36): kMC / NG at k = 100, 500 and the joint objective on its seed-$s training, 4 runs, every per-image score" \
    -- "$D/seed$s" && say "committed seed $s" || say "COMMIT FAILED seed $s"
done
for row in paper joint; do
  py -m dng_jax.report --workdir "$M/$D/nested/$row" --combine $(for s in ${SEEDS:-1 2}; do echo "$M/$D/seed$s/$row"; done) \
    > "$P/runs/candidate_clustering/$NAME/nested_$row.log" 2>&1 || { say "nested $row FAILED"; exit 1; }
done
git -C "$M" add -- "$D/nested" && git -C "$M" commit -q -m "candidate $NAME (issue 36): clustering on top over two trainings (nested, run level)" -- "$D/nested" \
  && say "committed nested" || say "COMMIT FAILED nested"
say "all done"
