#!/usr/bin/env bash
# The screening's validation-best candidate at full length (issue "A shipped model clearly above the classical
# pipeline", item 5): configs/cpu_real_unseen.py (80 epochs) with the candidate's settings, one training per
# seed, one after another, niced, from a worktree pinned at the commit they started with:
#
#   git worktree add --detach ../pinned_candidate HEAD
#   nohup scripts/studies/candidate_runs.sh ../pinned_candidate "$PWD" NAME SETTINGS [FROM] > candidate.out 2>&1 &
#
# SETTINGS: comma-separated section.field=value overrides (as ablate_generalisation.py --set). FROM (optional):
# a work-dir pattern with %s for the seed (e.g. ../pinned/runs/unseen_seed%s) holding the recipe's finished
# training of that seed (trained there first where it is missing); its latest checkpoint starts the candidate's
# training, which the trainer accepts only when SETTINGS add self-training rounds to it (constant lr: the steps
# so far are then exactly the candidate's teacher phase). The recipe's own test scores are kept beside the
# candidate's (recipe_baseline.json), so the added rounds can be paired with the training they started from.
# SEEDS (environment, default "1 2 0") picks the seeds and their order.
#
# Each seed's test scores without and with TTA (baseline.json, baseline_tta.json), its choosing-pool scores
# with TTA (choosing_tta.json: the validation images the screening chose on, now at full length), its metrics, its agreement
# file and its float16 weights (for the clustering on top, item 6) are copied into
# MAIN/docs/figures/generalise/candidate/NAME/seed<S> and committed; a committed seed is skipped, so the script
# resumes on another machine.
set -uo pipefail
P=$(cd "${1:?the pinned worktree}" && pwd)
M=$(cd "${2:?the checkout that receives the results}" && pwd)
NAME=${3:?the candidate name}
SETTINGS=${4:?the candidate settings, e.g. train.pseudo_label_rounds=1,...}
FROM=${5:-}
D=docs/figures/generalise/candidate/$NAME
LOG=${LOG:-$M/runs/candidate_runs.log}
mkdir -p "$(dirname "$LOG")"
cd "$P"
export PYTHONPATH=$P
py() { nice -n 15 python "$@"; }
say() { echo "$(date -u +%FT%TZ) $*" | tee -a "$LOG"; }
overrides=()
IFS=, read -ra pairs <<< "$SETTINGS"
for kv in "${pairs[@]}"; do overrides+=("--config.$kv"); done
say "start $NAME at $(git -C "$P" rev-parse --short HEAD): $SETTINGS"
for s in ${SEEDS:-1 2 0}; do
  w=runs/candidate/$NAME/seed$s; t=$M/$D/seed$s; model=candidate_${NAME}_seed$s
  if [ -f "$t/baseline_tta.json" ] && [ -f "$t/$model.npz" ]; then say "seed $s: committed"; continue; fi
  mkdir -p "$w"
  if [ -n "$FROM" ] && [ ! -d "$w/checkpoints" ]; then
    src=$(printf "$FROM" "$s")
    if [ ! -f "$src/baseline.json" ]; then  # the recipe's training of this seed is missing (or unfinished): train it
      say "seed $s: train the recipe in $src first"
      mkdir -p "$src"
      py -m dng_jax.train --config configs/cpu_real_unseen.py --workdir "$src" --config.train.seed=$s --no-progress -q \
        > "$src.log" 2>&1 || { say "seed $s: recipe training FAILED (see $src.log)"; exit 1; }
    fi
    if [ -d "$src/checkpoints" ]; then
      last=$(ls "$src/checkpoints" | grep -E '^[0-9]+$' | sort -n | tail -1)
      say "seed $s: starts from $src/checkpoints/$last"
      mkdir -p "$w/checkpoints"
      cp -r "$src/checkpoints/$last" "$w/checkpoints/"
      cp "$src/config.json" "$src"/metrics.csv "$src"/metrics.jsonl "$w/" 2>/dev/null
      echo "$src/checkpoints/$last" > "$w/started_from.txt"
      cp "$src/baseline.json" "$w/recipe_baseline.json"
    fi
  fi
  t0=$(date +%s)
  if [ ! -f "$w/baseline.json" ]; then
    say "seed $s: train"
    py -m dng_jax.train --config configs/cpu_real_unseen.py --workdir "$w" --config.train.seed=$s "${overrides[@]}" \
      --no-progress -q > "$w.log" 2>&1 || { say "seed $s: train FAILED (see $P/$w.log)"; exit 1; }
  fi
  if [ ! -f "$w/baseline_tta.json" ]; then
    say "seed $s: score with TTA"
    py -m dng_jax.evaluate checkpoint --checkpoint "$w" --tta --output "$w/baseline_tta.json" --no-progress -q \
      >> "$w.log" 2>&1 || { say "seed $s: TTA FAILED (see $P/$w.log)"; exit 1; }
  fi
  if [ ! -f "$w/choosing_tta.json" ]; then  # the validation images no screening row trained on, at full length
    say "seed $s: score the choosing pool with TTA"
    py -m dng_jax.evaluate checkpoint --checkpoint "$w" --split choosing --tta --output "$w/choosing_tta.json" \
      --no-progress -q >> "$w.log" 2>&1 || { say "seed $s: choosing pool FAILED (see $P/$w.log)"; exit 1; }
  fi
  say "seed $s: $(( ($(date +%s) - t0) / 60 )) min"
  py scripts/tools/export_bundled_model.py --workdir "$w" --name "$model" --config-file configs/cpu_real_unseen.py \
    --note "scripts/studies/candidate_runs.sh ... $NAME $SETTINGS (seed $s)" >> "$w.log" 2>&1 \
    || { say "seed $s: export FAILED (see $P/$w.log)"; exit 1; }
  mkdir -p "$t"
  cp "$w"/baseline.json "$w"/baseline_tta.json "$w"/choosing_tta.json "$w"/metrics.csv "$t/"
  cp "$w"/pseudo_labels/*agreement*.json "$w"/started_from.txt "$w"/recipe_baseline.json "$t/" 2>/dev/null
  mv dng_jax/segmentation/weights/$model.npz dng_jax/segmentation/weights/$model.json "$t/"
  git -C "$M" add -- "$D/seed$s"
  git -C "$M" commit -q -m "candidate $NAME (issue 36): seed $s at full length, test scores with and without TTA, float16 weights" \
    -- "$D/seed$s" && say "committed seed $s" || say "COMMIT FAILED seed $s"
done
say "all done"
