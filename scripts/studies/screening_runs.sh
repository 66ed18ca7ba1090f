#!/usr/bin/env bash
# The screening of issue "A shipped model clearly above the classical pipeline" (items 1 and 3): one 20-epoch
# training per row of configs/cpu_real_unseen.py, scored on the choosing pool (validation images no row trained
# on), one row after another, niced, from a worktree pinned at the commit they started with:
#
#   git worktree add --detach ../pinned36 HEAD
#   nohup scripts/studies/screening_runs.sh ../pinned36 "$PWD" > screening_runs.out 2>&1 &
#
# After each row, its per-image scores and the tables over the rows so far are copied into
# MAIN/docs/figures/generalise/screening and committed there. A committed row's scores are restored into the
# work dir first, so that ablate_generalisation.py reads them instead of training again: the script resumes
# on another machine. The first row (today's network teacher) is the control every row is paired with. The last
# row, the agreement teacher on the best capacity row, was added after the others had landed (width and the
# agreement teacher had lifted different types).
set -uo pipefail
P=$(cd "${1:?the pinned worktree}" && pwd)
M=$(cd "${2:?the checkout that receives the results}" && pwd)
D=docs/figures/generalise/screening
W=runs/screening
LOG=${LOG:-$M/runs/screening_runs.log}
SET="train.epochs=20,train.pseudo_label_rounds=1,train.pseudo_label_epochs=10,train.pseudo_label_images=teacher_pool"
ROWS=(
  "teacher_network:"
  "teacher_classical:train.pseudo_label_teacher=classical"
  "teacher_agreement:train.pseudo_label_teacher=agreement"
  "recipe:train.pseudo_label_rounds=0"
  "width24:train.pseudo_label_rounds=0,model.width=24"
  "epochs40:train.pseudo_label_rounds=0,train.epochs=40"
  "width32:train.pseudo_label_rounds=0,model.width=32"
  "width24_agreement:train.pseudo_label_teacher=agreement,model.width=24"
)
mkdir -p "$(dirname "$LOG")" "$M/$D"
cd "$P"
export PYTHONPATH=$P
say() { echo "$(date -u +%FT%TZ) $*" | tee -a "$LOG"; }
say "start at $(git -C "$P" rev-parse --short HEAD)"
args=()
for spec in "${ROWS[@]}"; do
  name=${spec%%:*}
  args+=(--row "$spec")
  mkdir -p "$W/$name"
  cp -n "$M/$D/$name"/scores_choosing_tta*.csv "$W/$name/" 2>/dev/null
  if [ -f "$W/$name/scores_choosing_tta1.csv" ] && [ -f "$W/ablation_choosing.md" ] \
     && grep -q "^| $name |" "$W/ablation_choosing.md"; then say "$name: scored"; continue; fi
  say "$name"
  t0=$(date +%s)
  nice -n 15 python scripts/studies/ablate_generalisation.py --config configs/cpu_real_unseen.py --workdir $W \
    --score-on choosing --set "$SET" "${args[@]}" > "$W/$name.log" 2>&1 || { say "$name FAILED (see $P/$W/$name.log)"; exit 1; }
  say "$name: $(( ($(date +%s) - t0) / 60 )) min"
  mkdir -p "$M/$D/$name"
  cp "$W"/ablation_choosing.csv "$W"/ablation_choosing.md "$M/$D/"
  cp "$W/$name"/scores_choosing_tta*.csv "$M/$D/$name/"
  cp "$W/$name"/seed0/metrics.csv "$M/$D/$name/" 2>/dev/null
  find "$W/$name/seed0" -name '*agreement*.json' -exec cp {} "$M/$D/$name/" \; 2>/dev/null
  grep -h 'seed 0 tta=' "$W/$name.log" > "$M/$D/$name/minutes.txt"
  git -C "$M" add -- "$D"
  git -C "$M" commit -q -m "screening (issue 36): row $name, 20 epochs, one seed, scored on the choosing pool" -- "$D" \
    && say "committed $name" || say "COMMIT FAILED $name"
done
say "all done"
