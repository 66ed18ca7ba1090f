"""Score a folder of predicted label images against a folder of ground-truth label images.

example:
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/pred [--json scores.json]
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/classical --compare test_set/pred

Files (16-bit PNG or TIFF) are paired by file-name stem, so gt/abc.png pairs with pred/abc.tif. The
score is the Kaggle DSB2018 mean average precision (empty ground truth and empty prediction score
1.0, exactly one empty scores 0.0). Per-image scores go to stdout, then the mean with its 95%
bootstrap interval (images resampled within cell types when --cell-types, or the cell_types.json
that python -m dng_jax.export_labels writes beside the gt folder, names them).

--compare B scores a second prediction folder on the same images and prints the paired comparison
B - PRED: the mean difference with its bootstrap interval (images resampled within cell types), the
share of images that improved, and the two-sided sign-flip permutation p-value of the mean difference
(exact up to 13 images that differ, else 10000 random sign sets). The verdict needs the interval on one
side of 0 and p < 0.05, and at least 10 images (5 of each cell type). --json writes {"map", "interval",
"n_images", "per_image"} (and "compare") atomically.

A ground-truth image without a prediction is an error listing the names, unless --allow-missing
scores it as an empty prediction. A prediction without a ground truth is an error unless
--ignore-extra. Every problem is one line "error: ..." on stderr and exit status 2.

Trained networks, from their per-image scores (each subcommand takes --help):
  python -m dng_jax.evaluate networks classical=classical new=RUN/baseline.json old=WD/baseline/scores.csv
      segmenters paired with the first on the same test images, per group and cell type
      (dng_jax.evaluation.networks; --csv FILE, --save-classical FILE)
  python -m dng_jax.evaluate seeds --output DIR seed0=RUN0/baseline.json seed1=RUN1/baseline.json
      several trainings of one recipe as one table: maps.csv and test_scores.csv (dng_jax.evaluation.seeds)
  python -m dng_jax.evaluate checkpoint --checkpoint RUN [--tta] [--split val|choosing] [--adabn] --output X.json
      a trained network scored on its config's test (or validation) images (dng_jax.evaluation.checkpoint)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dng_jax import cli
from dng_jax.config import experiment_config, load_config
from dng_jax.errors import InputError
from dng_jax.evaluation.checkpoint import CHECKPOINT_SPLITS, score_checkpoint
from dng_jax.evaluation.evaluator import format_table
from dng_jax.evaluation.folders import evaluate_dirs
from dng_jax.evaluation.networks import (CLASSICAL, classical_scores, classical_table, compare_networks,
                                         networks_csv, networks_markdown, parse_named, read_per_image)
from dng_jax.evaluation.scores import write_scores
from dng_jax.evaluation.seeds import collect_seeds
from dng_jax.evaluation.statistics import bootstrap_mean, paired_comparison, verdict_text
from dng_jax.io.atomic import atomic_write_text
from dng_jax.io.workdir import check_output_dir, check_output_file


def _parser() -> cli.ArgumentParser:
    ap = cli.make_parser("python -m dng_jax.evaluate", __doc__)
    ap.add_argument("--gt", required=True, help="folder of ground-truth label images (16-bit PNG/TIFF)")
    ap.add_argument("--pred", required=True, help="folder of predicted label images (16-bit PNG/TIFF)")
    ap.add_argument("--json", metavar="OUT", help="write {map, interval, n_images, per_image} (and compare, with --compare) to this file "
                         "(atomically)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score a ground-truth image without a prediction as an empty prediction")
    ap.add_argument("--ignore-extra", action="store_true",
                    help="skip predictions that have no ground truth instead of failing")
    ap.add_argument("--compare", metavar="PRED_B", default=None,
                    help="a second prediction folder: paired comparison PRED_B - PRED on the same images")
    ap.add_argument("--cell-types", metavar="JSON", default=None,
                    help="cell type of every image ({'cell_types': {stem: type}}, as export_labels writes) for "
                         "resampling within types; default: GT/../cell_types.json when it exists")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    cli.add_verbosity_flags(ap, "only the mean, not the per-image scores")
    return ap


def _strata(path: Path, names: list[str], explicit: bool) -> list[str] | None:
    """The cell type of every image from an export_labels ``cell_types.json`` (None: not given)."""
    if not path.exists():
        if explicit:
            raise InputError(f"--cell-types {path}: no such file")
        return None
    try:
        types = json.loads(path.read_text())["cell_types"]
        return [types[n] for n in names]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a cell_types.json naming every image ({type(e).__name__}: {e})") from None


def folders_main(argv: Sequence[str] | None = None) -> int:
    """``--gt GT --pred PRED``: a folder of label images scored; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)

    def run() -> int:
        t0 = time.perf_counter()
        if args.json:
            check_output_file(args.json, "--json")  # before scoring, not after
        if args.n_boot < 100:
            raise InputError(f"--n-boot must be >= 100, got {args.n_boot}")
        types_path = Path(args.cell_types) if args.cell_types else Path(args.gt).parent / "cell_types.json"
        scores = evaluate_dirs(args.gt, args.pred, allow_missing=args.allow_missing,
                               ignore_extra=args.ignore_extra, progress=None if args.progress else False)
        names = list(scores)
        strata = _strata(types_path, names, explicit=args.cell_types is not None)
        values = np.array([scores[n] for n in names])
        iv = bootstrap_mean(values, strata, n_boot=args.n_boot)
        if not args.quiet:
            width = max(len(n) for n in scores)
            for name, sc in scores.items():
                print(f"{name:<{width}}  {sc:.6f}")
        by = f", resampled within {len(set(strata))} cell types" if strata is not None else ""
        print(f"mAP {iv.estimate:.6f} [{iv.low:.4f}, {iv.high:.4f}] over {len(scores)} images (95% bootstrap "
              f"interval{by}; {time.perf_counter() - t0:.1f} s)")
        out = {"map": iv.estimate, "interval": [iv.low, iv.high], "n_images": len(scores), "per_image": scores}
        if args.compare:
            other = evaluate_dirs(args.gt, args.compare, allow_missing=args.allow_missing,
                                  ignore_extra=args.ignore_extra, progress=None if args.progress else False)
            pc = paired_comparison(values, np.array([other[n] for n in names]), strata, n_boot=args.n_boot)
            print(f"{args.compare} - {args.pred}: {pc.diff.estimate:+.4f} [{pc.diff.low:+.4f}, {pc.diff.high:+.4f}] "
                  f"(mAP {pc.mean_b:.4f} vs {pc.mean_a:.4f}); improved on {pc.improved:.0%} of the images, worse on "
                  f"{pc.worse:.0%}; sign-flip permutation p = {pc.p:.3g}{' (exact)' if pc.p_exact else ''}: "
                  f"{verdict_text(pc)}")
            out["compare"] = {"pred_b": str(args.compare), "map_b": pc.mean_b, "diff": pc.diff.estimate,
                              "interval": [pc.diff.low, pc.diff.high], "improved": pc.improved, "worse": pc.worse,
                              "p_permutation": pc.p, "p_exact": pc.p_exact, "per_image_b": other}
        if args.json:
            atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")
        return cli.EXIT_OK

    return cli.run_command(run)


# ------------------------------------------------------------------------------------- trained networks


NETWORKS_DOC = """Trained networks and the classical reference paired on the same test images, per group and cell type.

example:
  python -m dng_jax.evaluate networks --data stage1_train.zip \\
      classical=classical new=runs/baseline_cpu_real/baseline.json old=runs/cpu_real/baseline/scores.csv

NAME=PATH: a baseline.json (one run), a scores.csv (one row per run) or 'classical' (the reference without
learning, scored on the images of the first file with the classical settings of --config). The first is
A; every other is compared with it: B - A with its run-level interval (docs/statistics.md: several
trainings per side give a claim about the recipe, a single network only about itself), Holm within each
group of images, the share improved and the sign-flip p of these networks. --save-classical FILE keeps the classical reference's
per-image scores, which a later call reads back as classical=FILE instead of segmenting again."""


def _networks_parser() -> cli.ArgumentParser:
    ap = cli.make_parser("python -m dng_jax.evaluate networks", NETWORKS_DOC)
    ap.add_argument("scored", nargs="+", help="NAME=PATH (baseline.json, scores.csv or 'classical'); the first is A")
    ap.add_argument("--data", default=None, help="the DSB2018 zip (or folder), for 'classical' (default: the config's)")
    ap.add_argument("--config", default=str(cli.DEFAULT_CONFIG.with_name("cpu_real.py")),
                    help="for the classical settings (default: configs/cpu_real.py)")
    ap.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    ap.add_argument("--csv", default=None, help="also write the table as CSV (one row per group and B)")
    ap.add_argument("--save-classical", default=None,
                    help="write the classical reference's per-image scores here (run,image,cell_type,score)")
    cli.add_verbosity_flags(ap, "the table only (it is all this prints)")
    return ap


def networks_main(argv: Sequence[str]) -> int:
    args = _networks_parser().parse_args(argv)

    def run() -> int:
        for flag, path in (("--csv", args.csv), ("--save-classical", args.save_classical)):
            if path:
                check_output_file(path, flag)  # before the scoring, not after
        named = parse_named(args.scored)
        first_file = next((path for _, path in named if path != CLASSICAL), None)
        if first_file is None:
            raise InputError("give at least one baseline.json or scores.csv")
        ref = read_per_image(first_file)
        config = experiment_config(load_config(args.config))
        scores = {}
        for name, path in named:
            if path != CLASSICAL:
                scores[name] = read_per_image(path)
                continue
            scores[name] = classical_scores({i: t for i, (t, _) in ref.items()}, args.data or config.data.path,
                                            config.classical, progress=args.progress)
            if args.save_classical:
                write_scores(args.save_classical, classical_table(name, scores[name]))
        comparison = compare_networks(scores, level=args.level)
        print(networks_markdown(comparison), end="")
        if args.csv:
            atomic_write_text(args.csv, networks_csv(comparison))
        return cli.EXIT_OK

    return cli.run_command(run)


SEEDS_DOC = """Several trainings of one recipe (seeds) as one table.

example:
  python -m dng_jax.evaluate seeds --output docs/figures/cpu_real_baselines \\
      seed0=runs/baseline_cpu_real/baseline.json seed1=runs/base_seed1/baseline.json

Writes maps.csv (one row per run: MAP on CT1, the other types, all, each type) and test_scores.csv (every
per-image score, which python -m dng_jax.evaluate networks reads as one segmenter with several runs)."""


def seeds_main(argv: Sequence[str]) -> int:
    ap = cli.make_parser("python -m dng_jax.evaluate seeds", SEEDS_DOC)
    ap.add_argument("runs", nargs="+", help="NAME=PATH of a baseline.json, one per run")
    cli.add_output_flag(ap, "folder for maps.csv and test_scores.csv")
    cli.add_verbosity_flags(ap, "nothing but errors (maps.csv is written as always)")
    args = ap.parse_args(argv)

    def run() -> int:
        check_output_dir(args.output, "--output")
        text = collect_seeds(args.runs, args.output)
        if not args.quiet:
            print(text, end="")
        return cli.EXIT_OK

    return cli.run_command(run)


CHECKPOINT_DOC = """A trained network scored on the test (or validation) images of its config, with or without TTA.

example:
  python -m dng_jax.evaluate checkpoint --checkpoint runs/baseline_cpu_real --tta --output tta.json
  python -m dng_jax.evaluate checkpoint --checkpoint runs/baseline_cpu_real --split val --output val.json
  python -m dng_jax.evaluate checkpoint --checkpoint runs/teacher --split choosing --output choosing.json
  python -m dng_jax.evaluate checkpoint --checkpoint runs/baseline_cpu_real --adabn --output adabn.json

Writes a baseline.json-style file (MAP known / unknown / all, per type, per image) that the networks and
seeds subcommands read; the images are those the checkpoint's own config (data.protocol) held out. --split
choosing scores only the validation images a self-training teacher pool leaves to choose on (CT1's and the
odd-position half of each other type's: train.pseudo_label_images = "teacher_pool")."""


def checkpoint_main(argv: Sequence[str]) -> int:
    ap = cli.make_parser("python -m dng_jax.evaluate checkpoint", CHECKPOINT_DOC)
    ap.add_argument("--checkpoint", required=True, help="training work dir, checkpoint folder or bundled:<name>")
    ap.add_argument("--split", choices=CHECKPOINT_SPLITS, default="test",
                    help="test: the protocol's test images; val: CT1's and the other types' validation images; "
                         "choosing: the validation images outside the self-training teacher pool")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="test-time augmentation (default: the config's eval.tta)")
    ap.add_argument("--adabn", action="store_true",
                    help="normalise the encoder with each image's own statistics (AdaBN, retrain.batch_norm=adabn)")
    ap.add_argument("--data", default=None, help="the DSB2018 zip (or folder), if not where the config says")
    cli.add_output_flag(ap, "JSON file to write")
    cli.add_verbosity_flags(ap, "no table (the JSON file is written as always)")
    args = ap.parse_args(argv)

    def run() -> int:
        check_output_file(args.output, "--output")
        scores = score_checkpoint(args.checkpoint, split=args.split, tta=args.tta, adabn=args.adabn, data=args.data,
                                  progress=args.progress)
        scores.write_json(args.output)
        if not args.quiet:
            print(format_table(scores))
        return cli.EXIT_OK

    return cli.run_command(run)


#: ``python -m dng_jax.evaluate SUBCOMMAND ...``; without one, the folders of label images (--gt, --pred).
SUBCOMMANDS = {"networks": networks_main, "seeds": seeds_main, "checkpoint": checkpoint_main}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 partial, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return folders_main(argv)


if __name__ == "__main__":
    sys.exit(main())
