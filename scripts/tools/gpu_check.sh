#!/usr/bin/env bash
# The first thing to run whenever a GPU is at hand: what the paper's protocol needs there, measured.
#
#   scripts/tools/gpu_check.sh [--dry-run] [--out DIR] [--minutes M] [--data DATA] [PHASE ...]
#
# Phases, in order (default: all): pilot bench_retrain env plan bench_train bench_cluster sweep
#   pilot          the paper's question at the paper's scale in one command (configs/paper_pilot.py: ResNet-50,
#                  kMC(500), the wide protocol; needs --data, the DSB2018 collection packed by python -m
#                  dng_jax.pack, which travels beside the repository): the sweep, then its results gathered in
#                  DIR/pilot/ as at most 8 files (results.csv, scores.csv, table1.md, differences.csv,
#                  figures.tar, verdict.json, timings.csv, pilot.log) for a machine that sends back 8 files
#   bench_retrain  scripts/bench/bench_retrain.py at the paper's shapes (24 runs x batch 32 x 128 px, k=500): the
#                  retraining step as lax convs and as matmuls, float32 and bfloat16, 1x1-only and im2col, side
#                  by side (~46 s compile each on an H200: the first 6 variants, about 5 minutes)
#   env            nvidia-smi, JAX's devices and versions
#   plan           python -m dng_jax.plan --config configs/paper.py: memory per device, FLOPs, the largest
#                  sweep.seeds_per_chunk that fits, projected time per stage (the sweep's goal: < 60 min)
#   bench_train    scripts/bench/bench_train.py at the paper's shapes, float32 and bfloat16, batches 8 and 32
#   bench_cluster  scripts/bench/bench_cluster.py: the paper's clustering part (10 NG/kMC configurations x 48
#                  seeds + GNG), end to end where it is short, against the NumPy reference
#   sweep          python -m dng_jax.sweep --config configs/paper.py (needs the data: --data or
#                  ../shared/data/dsb2018/stage1_train.zip), resumable: it goes on where the last call stopped
#                  (not in the default phases: 4.9 h projected; name it)
#
# Every phase writes DIR/<phase>.log and, when it finishes, DIR/<phase>.done; a rerun skips finished phases,
# so calls of at most 10 minutes resume each other (--minutes: stop starting phases after M minutes; a
# phase is cut at the deadline with `timeout`, the sweep resumes from its work dir). DIR/summary.md
# gathers the tables for docs/benchmarks.md. Default DIR: runs/gpu_check (with --dry-run: runs/gpu_check_dry).
#
# --dry-run: the same phases at tiny sizes on whatever JAX sees (a CPU is fine): the tiny config and model,
# a few seeds and patterns; the pilot on the bundled mini-set packed into the folder layout, the baseline
# scored with one view (tta+adabn, not three), one scoring process; the sweep phase only prints its
# command. A test runs it.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

DRY=0; OUT=""; MINUTES=40; DATA=""; PHASES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    --minutes) MINUTES=$2; shift ;;
    --data) DATA=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    pilot|bench_retrain|env|plan|bench_train|bench_cluster|sweep) PHASES+=("$1") ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#PHASES[@]} -eq 0 ] && PHASES=(pilot bench_retrain env plan bench_train bench_cluster)
[ -z "$OUT" ] && OUT=$([ $DRY = 1 ] && echo runs/gpu_check_dry || echo runs/gpu_check)
# a dry run checks that every step runs, not how fast: XLA:CPU compiles without its expensive passes
if [ $DRY = 1 ]; then
  for f in --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true; do
    case " ${XLA_FLAGS:-} " in *" $f "*) ;; *) XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }$f" ;; esac  # once each
  done
  export XLA_FLAGS
fi
mkdir -p "$OUT" || { echo "error: cannot create $OUT" >&2; exit 2; }
START=$(date +%s); DEADLINE=$((START + MINUTES * 60))
[ -z "$DATA" ] && [ -f ../shared/data/dsb2018/stage1_train.zip ] && DATA=../shared/data/dsb2018/stage1_train.zip
WORKLOAD=docs/plan/paper_cpu.json  # the data's counts and shapes, for machines without the data

left() { echo $((DEADLINE - $(date +%s))); }

# run PHASE CMD...: log to $OUT/PHASE.log, mark done on success, cut at the deadline
run() {
  local phase=$1; shift
  if [ -f "$OUT/$phase.done" ]; then echo "== $phase: done before (rm $OUT/$phase.done to redo)"; return 0; fi
  local secs; secs=$(left)
  if [ "$secs" -le 30 ]; then echo "== $phase: skipped, the $MINUTES minutes are up"; return 0; fi
  echo "== $phase ($(date -u +%H:%M:%S), ${secs}s left): $*"
  local t0; t0=$(date +%s)
  timeout --signal=INT --kill-after=30 "$secs" "$@" 2>&1 | tee -a "$OUT/$phase.log"
  local rc=${PIPESTATUS[0]}
  echo "== $phase: exit $rc after $(( $(date +%s) - t0 ))s"
  [ "$rc" = 0 ] && touch "$OUT/$phase.done"
  return 0
}

# pilot_outputs WORKDIR DEST: the pilot's results as at most 8 files in DEST (what a lent machine sends back)
pilot_outputs() {
  local wd=$1 dest=$2
  mkdir -p "$dest"
  for f in results.csv table1.md differences.csv; do [ -f "$wd/$f" ] && cp "$wd/$f" "$dest/"; done
  [ -f "$wd/timings.csv" ] && cp "$wd/timings.csv" "$dest/"
  $PY scripts/studies/pilot_verdict.py --workdir "$wd" --scores "$dest/scores.csv" --json "$dest/verdict.json" \
    >> "$OUT/pilot.log" 2>&1 || echo "pilot: no verdict (see $OUT/pilot.log)"
  (cd "$wd" && ls ./*.png >/dev/null 2>&1 && tar -cf "$dest/figures.tar" ./*.png)
  cp "$OUT/pilot.log" "$dest/pilot.log"
}

for phase in "${PHASES[@]}"; do
  case $phase in
    pilot)
      if [ $DRY = 1 ]; then
        PDATA="$OUT/pilot_data"
        [ -f "$PDATA/manifest.csv" ] || $PY -m dng_jax.pack --output "$PDATA" --no-progress >/dev/null
        run pilot $PY -m dng_jax.sweep --config configs/paper_pilot.py --workdir "$OUT/pilot_workdir" --no-progress \
          --config.data.path="$PDATA" --config.data.crop_size=32 --config.model.stage_sizes="(1,1,1,1)" --config.model.dtype=float32 \
          --config.model.width=4 --config.model.decoder_features="(8,8,8,8,8)" --config.train.epochs=1 \
          --config.train.batch_size=2 --config.eval.tile_size=512 --config.cluster_data.n_images=12 \
          --config.cluster_data.crop_size=32 --config.cluster_data.batch_size=6 --config.cluster_data.pca_dim=4 \
          --config.sweep.ks="(2,)" --config.sweep.seeds=2 --config.sweep.seeds_per_chunk=2 --config.clustering.epochs=2 \
          --config.retrain.epochs=1 --config.retrain.batch_size=4 --config.retrain.crop_size=16 \
          --config.report.tsne_points=12 --config.report.panels=1 --config.eval.baseline_views="('tta+adabn',)" \
          --config.eval.workers=1
      elif [ -z "$DATA" ] || [ ! -e "$DATA" ]; then
        echo "== pilot: skipped, no data (give --data DIR: python -m dng_jax.pack --data stage1_train.zip --output DIR)"
        continue
      else
        run pilot $PY -m dng_jax.sweep --config configs/paper_pilot.py --workdir "$OUT/pilot_workdir" --no-progress \
          --config.data.path="$DATA"
      fi
      pilot_outputs "$OUT/pilot_workdir" "$OUT/pilot" ;;
    bench_retrain)
      if [ $DRY = 1 ]; then
        run bench_retrain $PY scripts/bench/bench_retrain.py --config configs/default.py --runs 2 --k 5 --calls 1 --only 2 \
          --set cluster_data.crop_size=32,retrain.crop_size=32,retrain.batch_size=4 --out "$OUT/bench_retrain.json"
      else  # FLOPs per run-step from the CPU plan (cuDNN's convolutions are not in XLA's count on a GPU)
        run bench_retrain $PY scripts/bench/bench_retrain.py --only 6 --gflop-per-run-step 245 --out "$OUT/bench_retrain.json"
      fi ;;
    env)
      if [ $DRY = 1 ]; then
        run env $PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
      else
        run env bash -c "nvidia-smi; $PY -c \"import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices()); print(jax.local_devices()[0].memory_stats())\""
      fi ;;
    plan)
      if [ $DRY = 1 ]; then
        run plan $PY -m dng_jax.plan --config configs/default.py --stages features,eval --time_steps 1 \
          --json "$OUT/plan.json"
      else
        run plan $PY -m dng_jax.plan --config configs/paper.py --workload "$WORKLOAD" --json "$OUT/plan.json" \
          --stages train,retrain,eval,features,cluster
      fi ;;
    bench_train)
      if [ $DRY = 1 ]; then
        run bench_train $PY scripts/bench/bench_train.py --tiny --size 32 --batch-sizes 2 --steps 1 --warmup 0 --no-augment \
          --json "$OUT/bench_train_float32.json"
      else
        run bench_train bash -c "$PY scripts/bench/bench_train.py --batch-sizes 8,32 --dtype bfloat16 --json $OUT/bench_train_bfloat16.json && \
          $PY scripts/bench/bench_train.py --batch-sizes 8,32 --dtype float32 --json $OUT/bench_train_float32.json"
      fi ;;
    bench_cluster)
      if [ $DRY = 1 ]; then
        run bench_cluster $PY scripts/bench/bench_cluster.py --quick --n 200 --seeds 2 --ks 5 --methods kmc,ng,gng \
          --epochs 4 --gng-units 16
      else
        run bench_cluster $PY scripts/bench/bench_cluster.py --e2e --e2e-max-k 1000 --e2e-epochs 200
      fi ;;
    sweep)
      CMD=($PY -m dng_jax.sweep --config configs/paper.py --workdir "$OUT/sweep_paper" --no-progress)
      if [ $DRY = 1 ]; then
        echo "== sweep (dry run, not started): ${CMD[*]} --config.data.path=<stage1_train.zip>"
      elif [ -z "$DATA" ] || [ ! -e "$DATA" ]; then
        echo "== sweep: skipped, no data (give --data path/to/stage1_train.zip or its packed folder)"
      else
        run sweep "${CMD[@]}" --config.data.path="$DATA"
      fi ;;
  esac
done

# summary.md: the tables of every phase that wrote one
{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ) $([ $DRY = 1 ] && echo '(dry run)')"
  for phase in pilot bench_retrain env plan bench_train bench_cluster sweep; do
    [ -f "$OUT/$phase.log" ] || continue
    echo; echo "## $phase $([ -f "$OUT/$phase.done" ] && echo '(finished)' || echo '(NOT finished)')"; echo
    case $phase in
      plan) sed -n '/^backend /,$p' "$OUT/plan.log" ;;
      pilot) [ -f "$OUT/pilot/table1.md" ] && cat "$OUT/pilot/table1.md"; [ -f "$OUT/pilot/verdict.json" ] && \
               { echo '```'; cat "$OUT/pilot/verdict.json"; echo '```'; } ;;
      bench_train) grep -E '^(\||[0-9]+ x )' "$OUT/bench_train.log" ;;
      bench_retrain) grep -E '^(\||backend )' "$OUT/bench_retrain.log" ;;
      bench_cluster) grep -E '^(#|kmc|ng|gng|     end-to-end)' "$OUT/bench_cluster.log" ;;
      *) echo '```'; tail -n 25 "$OUT/$phase.log"; echo '```' ;;
    esac
  done
} > "$OUT/summary.md"
echo "summary: $OUT/summary.md"
missing=0
for phase in "${PHASES[@]}"; do
  [ $DRY = 1 ] && [ "$phase" = sweep ] && continue
  [ "$phase" = sweep ] && { [ -z "$DATA" ] || [ ! -e "$DATA" ]; } && continue
  [ "$phase" = pilot ] && [ $DRY = 0 ] && { [ -z "$DATA" ] || [ ! -e "$DATA" ]; } && continue
  [ -f "$OUT/$phase.done" ] || { echo "not finished: $phase (rerun the same command to go on)"; missing=1; }
done
exit $missing
