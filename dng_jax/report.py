"""Re-make Table I and Figs. 2, 6-8 from a sweep's work dir, merging the runs of every job of a split sweep.

example:
  python -m dng_jax.report --workdir runs/cpu_real
  python -m dng_jax.report --workdir runs/cpu_real --compare kmc:5 ng:5 --compare kmc:5 kmc:500
  python -m dng_jax.report --workdir runs/nested --combine runs/sweep_b0 runs/sweep_b1 runs/sweep_b2

Rewrites in --workdir: results.csv (from every finished configuration's runs/*/results.json, whichever
job ran it; from results.csv itself in a work dir without them), table1.md (with the notes line rebuilt
from sweep_config.json when present), differences.csv (and differences_validation.csv when the sweep
scored validation images), fig6_map_known.png, fig7_map_unknown.png and
fig8_entropy_std.png (the figures only when there are rows), and fig2_latent_tsne.png when it is missing
and cluster_data/ is finished; the intervals are run-level (docs/statistics.md) at the sweep's own
eval.level unless --level says otherwise. These are the bytes the whole sweep writes from the same runs.
fig5_panels.png needs the model: the whole sweep (python -m dng_jax.sweep with the same config and
--workdir, run after the jobs) draws it, loading every finished stage.

Prints the paths, then, on stderr, each configuration of sweep_config.json that has no results yet
(failed: which job and why; else not run yet, or still running). It runs beside the jobs of a split sweep
(the table then has what is finished so far), not during a whole sweep in the same work dir. Exit status
0: every configuration is in the table; 1: some are missing (listed); 2: the work dir is in use by a whole
sweep, or the baseline's scores or any results cannot be read.

--compare A B (repeatable) rewrites nothing: it pairs any two configurations (method:k, baseline or
classical) on the same images from the saved per-image scores (dng_jax.experiment.pairs) and prints
B - A with its run-level interval and the claim it carries, the share improved and the sign-flip p
(these networks), Holm over the pairs given;
--group picks the images (CT1, "without CT1" or all), --split validation the validation images (on
which choices are made) instead of the test images; run-level intervals at --level (else 0.95).

--combine WORKDIR...: sweeps made one per trained baseline of the same recipe (sweep.checkpoint), scored
on the same images, as one nested design written to --workdir (a folder of its own): each run paired with
its own baseline, the baselines the top level of the intervals (a general claim about the recipe, not
about one trained network); results.csv gains a baseline column, combined_from.json names the work dirs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dng_jax import cli
from dng_jax.config import EvalConfig, experiment_config
from dng_jax.errors import ConfigError, InputError
from dng_jax.experiment import layout
from dng_jax.experiment.layout import finished_configurations
from dng_jax.experiment.pairs import SPLITS, compare_pairs
from dng_jax.experiment.report import combine_report, read_sweep_scores, rebuild_report
from dng_jax.experiment.shards import unfinished
from dng_jax.experiment.sweep import sweep_configurations
from dng_jax.io.workdir import WorkdirLock, check_output_dir


def expected_configurations(workdir: Path) -> list[str] | None:
    """The configurations (``runs/`` names) of the sweep in ``workdir``; None when its config cannot say."""
    try:
        cfg = experiment_config(json.loads((workdir / layout.SWEEP_CONFIG).read_text()))
        return [c.dirname for c in sweep_configurations(cfg)]
    except (OSError, ValueError, ConfigError) as e:
        print(f"note: cannot list the sweep's configurations from {workdir / layout.SWEEP_CONFIG} ({e}); "
              f"the table covers the configurations found in {layout.stage_dir(workdir, layout.RUNS)}", file=sys.stderr)
        return None


def check_finished_sweep(workdir: Path) -> None:
    """Refuse a work dir without a finished sweep to report (before it is locked, so nothing is written)."""
    if not (workdir / layout.RESULTS_CSV).exists() and not finished_configurations(workdir):
        raise InputError(f"--workdir {workdir} holds no finished sweep (no results.csv and no finished "
                         f"configuration in {layout.stage_dir(workdir, layout.RUNS)}): give the work dir of a sweep, "
                         f"or run python -m dng_jax.sweep --workdir {workdir} first")


def rebuild(workdir: Path, level: float | None, quiet: bool = False) -> int:
    """The report rebuilt in ``workdir``; EXIT_PARTIAL when configurations of its sweep are missing."""
    check_finished_sweep(workdir)
    with WorkdirLock(workdir, "--workdir", shared=True):  # beside a split sweep's jobs, not in a whole sweep
        paths = rebuild_report(workdir, level=level)
    for path in [] if quiet else paths:
        print(path)
    if not quiet and not (workdir / layout.FIG5).exists():
        print("note: fig5_panels.png needs the model: the whole sweep (python -m dng_jax.sweep, same config "
              "and --workdir) draws it, loading every finished stage", file=sys.stderr)
    expected = expected_configurations(workdir)
    missing = unfinished(workdir, expected, list(finished_configurations(workdir))) if expected else {}
    if missing:
        print(f"not in the table: {len(missing)} of {len(expected)} configurations", file=sys.stderr)
        for name, why in missing.items():
            print(f"  {name}: {why}", file=sys.stderr)
        return cli.EXIT_PARTIAL
    return cli.EXIT_OK


def compare(workdir: Path, args) -> int:
    """``--compare``: the pairs printed, nothing written."""
    scores = read_sweep_scores(workdir)
    if scores is None:
        raise InputError(f"{workdir} holds no per-image scores (scores.csv) to compare")
    defaults = EvalConfig()
    print(compare_pairs(scores, [tuple(pair) for pair in args.compare], group=args.group, split=args.split,
                        level=args.level or defaults.level), end="")
    return cli.EXIT_OK


def combine(output: Path, workdirs: list[Path], level: float | None, quiet: bool = False) -> int:
    """``--combine``: the nested table of sweeps made one per trained baseline, in ``output``."""
    missing = [w for w in workdirs if not w.is_dir()]
    if missing:
        raise InputError(f"--combine {missing[0]}: no such folder")
    if output.resolve() in {w.resolve() for w in workdirs}:
        raise InputError(f"--workdir {output} is one of the sweeps to combine: give the combined table a folder "
                         f"of its own")
    if len(workdirs) < 2:
        raise InputError("--combine needs the work dirs of at least two sweeps (one per trained baseline)")
    check_output_dir(output, "--workdir")
    for path in combine_report(output, workdirs, level=level):
        if not quiet:
            print(path)
    return cli.EXIT_OK


def _parser() -> cli.ArgumentParser:
    p = cli.make_parser("python -m dng_jax.report", __doc__)
    p.add_argument("--workdir", required=True,
                   help="a sweep work dir (python -m dng_jax.sweep --workdir) holding baseline/map.json and "
                        "runs/*/results.json (or results.csv)")
    p.add_argument("--n-boot", type=int, default=None,
                   help="no longer used: the intervals are run-level (docs/statistics.md)")
    p.add_argument("--level", type=float, default=None,
                   help="confidence level of the intervals, e.g. 0.95 (default: the sweep's eval.level; 0.95 "
                        "with --compare)")
    p.add_argument("--compare", "--pair", nargs=2, action="append", metavar=("A", "B"), default=None,
                   help="print B - A on the same images (method:k, baseline or classical) instead of rebuilding "
                        "the report; repeatable")
    p.add_argument("--group", default="without CT1", help='--compare\'s images: "CT1", "without CT1" or "all"')
    p.add_argument("--combine", nargs="+", metavar="WORKDIR", default=None,
                   help="combine these sweeps (one per trained baseline) into the nested table in --workdir")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="--compare on the test images or on the validation images (for choosing)")
    cli.add_verbosity_flags(p, "no list of the files written (what is missing is still listed)")
    return p


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.n_boot is not None:
        print("note: --n-boot no longer applies: the intervals are run-level (docs/statistics.md)", file=sys.stderr)
    if args.level is not None and not 0.5 <= args.level < 1:
        p.error(f"--level {args.level}: give a level in [0.5, 1), e.g. 0.95")

    def run() -> int:
        workdir = Path(args.workdir)
        if args.combine:
            return combine(workdir, [Path(w) for w in args.combine], args.level, args.quiet)
        if not workdir.is_dir():
            raise InputError(f"--workdir {workdir}: no such folder")
        if args.compare:
            return compare(workdir, args)
        return rebuild(workdir, args.level, args.quiet)

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
