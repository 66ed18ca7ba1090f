"""``python -m dng_jax.sweep``: the paper's whole experiment, resumable, as one batch job.

Stages (each saved atomically in the work dir; a rerun of the same command skips what is finished):

1. ``baseline/``       the segmentation U-Net trained on CT1 (or ``--config.sweep.checkpoint``) and its
                       MAP on the known / unknown / all test images.
2. ``cluster_data/``   ``cluster_data.n_images`` augmented crops of ``cluster_data.crop_size`` px square
                       (paper: 256) of the unlabeled (non-CT1) images, the encoder's globally average-pooled
                       latent (2048-D for ResNet-50) and its PCA to ``cluster_data.pca_dim`` dimensions
                       (paper: 32).
3. ``runs/<m>_k<k>/``  per configuration: ``fit_many`` over all seeds (pseudo-labels), then the encoder
                       retrained on them (seeds vmapped, in chunks), each run evaluated with the
                       baseline decoder. A chunk's results are saved as soon as it finishes.
4. ``results.csv``, ``table1.md``, ``fig2_latent_tsne.png``, ``fig5_panels.png``, ``fig6_map_known.png``,
   ``fig7_map_unknown.png``, ``fig8_entropy_std.png``.

One configuration that fails is reported in ``failures.json`` and does not stop the others.

With no arguments it runs ``configs/default.py`` (a tiny model on the bundled mini-set, minutes on a
CPU). ``--config configs/paper.py`` is the paper's protocol; any field can be overridden:
``--config.sweep.seeds=8 --workdir runs/seeds8`` (a work dir holds one configuration only).

Exit status:

  0  every configuration finished; the table and figures are written.
  1  at least one configuration failed (listed in ``failures.json``; the table and figures cover the
     others, and a rerun retries only the failed ones); also a command-line error (unknown flag,
     unreadable ``--config`` file, positional arguments) or an unexpected error (with a traceback).
  2  the sweep could not start or go on: unreadable data, an unreadable ``sweep.checkpoint``, a work dir
     that holds a sweep made with another configuration, or an invalid configuration value; one line
     ``error: ...`` on stderr.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dng_jax.atomic import atomic_save_npy, atomic_save_npz, atomic_write_text
from dng_jax.cli import load_config  # noqa: F401  (part of this module's API)

__all__ = ["run_sweep", "sweep_configurations", "cluster_seeds", "load_config", "main", "DEFAULT_CONFIG", "ConfigMismatchError"]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.py"


class ConfigMismatchError(RuntimeError):
    """The work dir holds a sweep made with another configuration."""


# ----------------------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# Fields whose change invalidates what is in the work dir. ``sweep.seeds_per_chunk`` and progress
# settings may change between a crash and the rerun.
_VOLATILE = {("sweep", "seeds_per_chunk"), ("sweep", "progress")}


def _comparable(cfg_dict: dict) -> dict:
    out = json.loads(json.dumps(cfg_dict, default=str))
    for section, key in _VOLATILE:
        out.get(section, {}).pop(key, None)
    return out


def _check_config(workdir: Path, config) -> None:
    """Refuse to mix two configurations in one work dir (a rerun must be the same experiment)."""
    path = workdir / "sweep_config.json"
    current = _comparable(config.to_dict())
    if path.exists():
        saved = _comparable(_read_json(path))
        if saved != current:
            diffs = sorted(
                f"{s}.{k}" for s in set(saved) | set(current)
                for k in set(saved.get(s, {})) | set(current.get(s, {}))
                if saved.get(s, {}).get(k) != current.get(s, {}).get(k)
            )
            raise ConfigMismatchError(
                f"{workdir} holds a sweep made with another configuration (differs in: {', '.join(diffs)}); "
                f"rerun with the same config or use a new --workdir")
    else:
        _write_json(path, config.to_dict())


def sweep_configurations(config) -> list[tuple[str, int]]:
    """(method, k) pairs of the sweep: every k for kMC and NG, GNG once with its start size."""
    pairs = []
    for method in config.sweep.methods:
        if method == "gng":
            pairs.append(("gng", int(config.clustering.gng.start_units)))
        elif method in ("kmc", "ng"):
            pairs += [(method, int(k)) for k in config.sweep.ks]
        else:
            raise ValueError(f"unknown clustering method {method!r} in sweep.methods; use kmc, ng or gng")
    return pairs


class _Samples:
    """A read-once cache of test samples with the ``Source.load`` interface."""

    def __init__(self, source, ids):
        self._samples = {i: source.load(i) for i in ids}

    def load(self, sid):
        return self._samples[sid]


# ----------------------------------------------------------------------------------------- stage 1


def stage_baseline(config, workdir: Path, source, splits, test_cache, progress: bool):
    """Train (or load) the baseline U-Net; return (variables, model, metrics dict)."""
    from dng_jax.checkpointing import load_variables
    from dng_jax.predict import evaluate_baseline, postprocess_config
    from dng_jax.train import train_and_evaluate

    bdir = workdir / "baseline"
    metrics_path = bdir / "metrics.json"
    ckpt = config.sweep.get("checkpoint")
    if ckpt:
        variables, model, _ = load_variables(ckpt)
    elif (bdir / "checkpoints").exists() and metrics_path.exists():
        variables, model, _ = load_variables(bdir)
    else:
        _log("stage 1: training the baseline segmentation network on CT1")
        state = train_and_evaluate(config, bdir, evaluate=False, progress=progress)
        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        from dng_jax.models import make_model

        model = make_model(config.model)
    if metrics_path.exists():
        metrics = _read_json(metrics_path)
    else:
        res = evaluate_baseline(variables, model, test_cache, splits, post_cfg=postprocess_config(config),
                                tile_size=int(config.eval.tile_size), path=bdir / "baseline.json",
                                progress=progress)
        metrics = {"map_known": res["known"], "map_unknown": res["unknown"], "map_all": res["all"],
                   "per_image": {k: v["score"] for k, v in res["per_image"].items()}}
        _write_json(metrics_path, metrics)
    _log(f"baseline MAP: known {metrics['map_known']:.3f}  unknown {metrics['map_unknown']:.3f}  "
         f"all {metrics['map_all']:.3f}")
    return variables, model, metrics


# ----------------------------------------------------------------------------------------- stage 2


def stage_cluster_data(config, workdir: Path, source, manifest, splits, variables, model, progress: bool):
    """Augmented crops of the unlabeled images, their pooled latent and its PCA (paper II-C)."""
    from dng_jax.augment import augment_batch
    from dng_jax.clustering import pca_fit, pca_transform
    from dng_jax.pipeline import random_crop

    cdir = workdir / "cluster_data"
    done = cdir / "latent.npy"
    if done.exists():
        return (np.load(cdir / "images.npy", mmap_mode="r"), np.load(done),
                _read_json(cdir / "sources.json"))
    cc = config.cluster_data
    n, crop = int(cc.n_images), int(cc.crop_size)
    _log(f"stage 2: drawing {n} augmented {crop}x{crop} crops from {len(splits.cluster)} unlabeled images")
    rng = np.random.default_rng(int(cc.seed))
    picks = rng.integers(0, len(splits.cluster), n)
    from tqdm.auto import tqdm

    loaded = {}
    for i in tqdm(sorted(set(picks.tolist())), desc="load unlabeled", disable=not progress, leave=False):
        loaded[i] = source.load(splits.cluster[i], with_labels=False).image
    images = np.zeros((n, crop, crop, 3), np.uint8)
    for j, i in enumerate(picks):
        images[j], _ = random_crop(rng, loaded[i], np.zeros(loaded[i].shape[:2], np.uint8), crop)
    aug_cfg = _augment_config(config)
    bs = int(cc.batch_size)
    key = jax.random.key(int(cc.seed))
    aug = jax.jit(lambda k, x: augment_batch(k, x.astype(jnp.float32) / 255.0, None, aug_cfg)[0])
    feats_fn = jax.jit(lambda x: jnp.mean(model.apply(variables, x, train=False, method="encode")[0]
                                          .astype(jnp.float32), axis=(1, 2)))
    features = np.zeros((n, model.encoder.latent_features), np.float32)
    for s in tqdm(range(0, n, bs), desc="latent", disable=not progress, leave=False):
        x = aug(jax.random.fold_in(key, s), jnp.asarray(images[s : s + bs]))
        images[s : s + bs] = np.asarray(jnp.round(x * 255.0)).astype(np.uint8)
        features[s : s + bs] = np.asarray(feats_fn(x))
    pca = pca_fit(jnp.asarray(features), int(cc.pca_dim))
    latent = np.asarray(pca_transform(pca, jnp.asarray(features)), np.float32)
    sources = {"ids": [splits.cluster[i] for i in picks], "types": [manifest[splits.cluster[i]] for i in picks]}
    atomic_save_npy(cdir / "images.npy", images)
    atomic_save_npy(cdir / "features.npy", features)
    atomic_save_npy(cdir / "pca_mean.npy", np.asarray(pca.mean))
    atomic_save_npy(cdir / "pca_components.npy", np.asarray(pca.components))
    _write_json(cdir / "sources.json", sources)
    atomic_save_npy(done, latent)  # written last: its presence marks the stage done
    return np.load(cdir / "images.npy", mmap_mode="r"), latent, sources


def _augment_config(config):
    from dng_jax.augment import AugmentConfig

    section = config.get("augment")
    if not section:
        return AugmentConfig()
    fields = set(AugmentConfig.__dataclass_fields__)
    return AugmentConfig(**{k: v for k, v in section.to_dict().items() if k in fields})


# ----------------------------------------------------------------------------------------- stage 3


def cluster_seeds(method: str, k: int, keys: jax.Array, X: jax.Array, ccfg, progress: bool = False):
    """Pseudo-labels ``[S, n]`` (0..units-1) and per-seed stats of one configuration, seeds vmapped.

    The seeds' axis is sharded over all local devices when there are several. GNG's labels are its
    active units renumbered in slot order, so they index a dense classifier head.
    """
    from dng_jax.clustering import assign_many, gng, kmc_config, ng_config, runs_mesh
    from dng_jax.clustering import neural_gas, normalized_entropy_many, quantization_error_many

    mesh = runs_mesh() if jax.local_device_count() > 1 else None
    if method in ("ng", "kmc"):
        common = dict(epochs=int(ccfg.epochs), eps0=float(ccfg.eps0), eps_fin=float(ccfg.eps_fin),
                      full_rank=str(ccfg.get("full_rank", "bitonic")))
        if method == "ng":
            cfg = ng_config(k, r0=float(ccfg.r0_factor) * k, r_fin=float(ccfg.r_fin), **common)
        else:
            cfg = kmc_config(k, r0=float(ccfg.kmc_r), r_fin=float(ccfg.kmc_r), **common)
        centroids = neural_gas.fit_many(keys, X, cfg, mesh=mesh, progress=progress).centroids
        active = jnp.ones(centroids.shape[:2], bool)
    elif method == "gng":
        g = ccfg.gng
        cfg = gng.GNGConfig(**{f: type(gng.GNGConfig._field_defaults[f])(g[f])
                               for f in gng.GNGConfig._fields if f in g})
        state = gng.fit_many(keys, X, cfg, mesh=mesh, progress=progress)
        centroids, active = state.w, state.active
    else:
        raise ValueError(f"unknown clustering method {method!r}")
    slots = np.asarray(assign_many(X, centroids, active))
    act = np.asarray(active)
    units = act.sum(axis=1)
    # Renumber the active slots 0..units-1 (identity for kMC / NG).
    rank = np.cumsum(act, axis=1) - 1
    labels = np.take_along_axis(rank, slots, axis=1).astype(np.int32)
    ent = np.asarray(normalized_entropy_many(jnp.asarray(slots), centroids.shape[1], active))
    qe = np.asarray(quantization_error_many(X, centroids, active))
    stats = [{"seed": i, "units": int(units[i]), "norm_entropy": float(ent[i]), "quant_error": float(qe[i])}
             for i in range(len(units))]
    return labels, stats


def _cluster(method: str, k: int, latent: np.ndarray, config, n_seeds: int, progress: bool):
    base = jax.random.key(int(config.sweep.seed))
    keys = jax.random.split(jax.random.fold_in(base, zlib.crc32(f"{method}_{k}".encode()) % (2**31)), n_seeds)
    return cluster_seeds(method, k, keys, jnp.asarray(latent, jnp.float32), config.clustering, progress)


def stage_configuration(config, workdir: Path, method: str, k: int, images, latent, variables, model,
                        splits, test_cache, progress: bool) -> list[dict]:
    """Cluster, retrain and evaluate every seed of one configuration; returns its result rows."""
    from dng_jax.predict import evaluate_baseline, postprocess_config, predict_instances
    from dng_jax.retrain import EncoderClassifier, RetrainConfig, retrain_runs

    rdir = workdir / "runs" / f"{method}_k{k}"
    final = rdir / "results.json"
    if final.exists():
        return _read_json(final)
    n_seeds = int(config.sweep.seeds)
    labels_path = rdir / "pseudo_labels.npy"
    if labels_path.exists():
        labels, stats = np.load(labels_path), _read_json(rdir / "clustering.json")
    else:
        t0 = time.time()
        labels, stats = _cluster(method, k, latent, config, n_seeds, progress)
        labels = np.asarray(labels, np.int32)
        _write_json(rdir / "clustering.json", stats)
        atomic_save_npy(labels_path, labels)
        _log(f"{method}({k}): clustered {n_seeds} seeds in {time.time() - t0:.1f}s")
    n_classes = int(labels.max()) + 1 if method == "gng" else k
    rc = RetrainConfig(**{f: config.retrain[f] for f in RetrainConfig._fields})
    clf = EncoderClassifier(model.encoder, n_classes)
    encoder_vars = {"params": variables["params"]["encoder"], "batch_stats": variables["batch_stats"]["encoder"]}
    post_cfg = postprocess_config(config)
    chunk = max(1, int(config.sweep.seeds_per_chunk))
    rows: list[dict] = []
    for c0 in range(0, n_seeds, chunk):
        seeds = list(range(c0, min(c0 + chunk, n_seeds)))
        cpath = rdir / f"chunk_{c0:04d}.json"
        if cpath.exists():
            rows += _read_json(cpath)
            continue
        key = jax.random.key(int(config.sweep.seed) + 1)  # run i's randomness: fold_in(key, i), any chunking
        states, losses = retrain_runs(key, clf, encoder_vars, np.asarray(images), labels[seeds], rc,
                                      _augment_config(config), progress=progress,
                                      desc=f"retrain {method}({k}) seeds {seeds[0]}-{seeds[-1]}",
                                      run_ids=np.asarray(seeds, np.int32))
        chunk_rows = []
        for j, seed in enumerate(seeds):
            run_vars = {
                "params": {**variables["params"], "encoder": jax.tree.map(lambda a: a[j], states.params["encoder"])},
                "batch_stats": {**variables["batch_stats"],
                                "encoder": jax.tree.map(lambda a: a[j], states.batch_stats["encoder"])},
            }
            res = evaluate_baseline(run_vars, model, test_cache, splits, post_cfg=post_cfg,
                                    tile_size=int(config.eval.tile_size), progress=False)
            st = stats[seed]
            chunk_rows.append({"method": method, "k": k, "seed": seed, "units": int(st["units"]),
                               "norm_entropy": float(st["norm_entropy"]), "quant_error": float(st["quant_error"]),
                               "map_known": res["known"], "map_unknown": res["unknown"], "map_all": res["all"],
                               "final_loss": float(losses[-1, j])})
            if seed == 0:  # keep one run's predictions for the Fig. 5 panels
                preds = {sid: predict_instances(run_vars, model, test_cache.load(sid).image, post_cfg,
                                                tile_size=int(config.eval.tile_size)) for sid in splits.test_all}
                atomic_save_npz(rdir / "seed0_predictions.npz", preds)
        _write_json(cpath, chunk_rows)
        rows += chunk_rows
    _write_json(final, rows)
    return rows


# ----------------------------------------------------------------------------------------- stage 4


def stage_report(config, workdir: Path, rows, baseline, latent, sources, variables, model, splits,
                 test_cache, manifest, progress: bool) -> list[Path]:
    from dng_jax.predict import postprocess_config, predict_instances
    from dng_jax.report import plot_latent, plot_panels, table1_notes, write_report
    from dng_jax.tsne import tsne

    paths = write_report(workdir, rows, baseline, table1_notes(config))
    fig2 = workdir / "fig2_latent_tsne.png"
    if not fig2.exists():
        m = min(int(config.report.tsne_points), latent.shape[0])
        sel = np.random.default_rng(0).choice(latent.shape[0], m, replace=False)
        emb = tsne(latent[sel], jax.random.key(0))
        plot_latent(emb, [sources["types"][i] for i in sel], fig2,
                    f"t-SNE of the {latent.shape[1]}-D latent of {m} clustering images (Fig. 2)")
    paths.append(fig2)
    if rows:
        # The configuration shown: the paper shows kMC; take the kMC (else any) config with the best mean
        # MAP on the unknown types.
        by_cfg: dict[tuple[str, int], list[float]] = {}
        for r in rows:
            by_cfg.setdefault((r["method"], r["k"]), []).append(r["map_unknown"])
        cands = [c for c in by_cfg if c[0] == "kmc"] or list(by_cfg)
        method, k = max(cands, key=lambda c: np.mean(by_cfg[c]))
        pred_path = workdir / "runs" / f"{method}_k{k}" / "seed0_predictions.npz"
        if pred_path.exists():
            preds = np.load(pred_path)
            from dng_jax.metrics import image_score

            panels = []
            post_cfg = postprocess_config(config)
            type_of = {i: t for t, ids in splits.test.items() for i in ids}
            from dng_jax.partition import CELL_TYPES

            ids = [splits.test[t][0] for t in CELL_TYPES if splits.test.get(t)][: int(config.report.panels)]
            for sid in ids:
                s = test_cache.load(sid)
                base = predict_instances(variables, model, s.image, post_cfg, tile_size=int(config.eval.tile_size))
                after = preds[sid]
                panels.append({"name": sid[:12], "cell_type": type_of[sid], "image": s.image, "gt": s.labels,
                               "baseline": base, "baseline_map": image_score(s.labels, base),
                               "clustered": after, "clustered_map": image_score(s.labels, after),
                               "run": f"{method}({k}) seed 0"})
            plot_panels(panels, workdir / "fig5_panels.png")
            paths.append(workdir / "fig5_panels.png")
    return paths


# ----------------------------------------------------------------------------------------- driver


def run_sweep(config, workdir, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the sweep of ``config`` in ``workdir``; returns the rows, baseline and output paths."""
    from dng_jax.train import open_data

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_config(workdir, config)
    t0 = time.time()
    source, manifest, splits = open_data(config, workdir)
    test_cache = _Samples(source, splits.test_all)
    variables, model, baseline = stage_baseline(config, workdir, source, splits, test_cache, progress)
    images, latent, sources = stage_cluster_data(config, workdir, source, manifest, splits, variables, model,
                                                 progress)
    rows: list[dict] = []
    failures: dict[str, str] = {}
    pairs = sweep_configurations(config)
    for i, (method, k) in enumerate(pairs):
        _log(f"configuration {i + 1}/{len(pairs)}: {method}({k})")
        try:
            rows += stage_configuration(config, workdir, method, k, images, latent, variables, model, splits,
                                        test_cache, progress)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failing configuration must not lose the others
            failures[f"{method}_k{k}"] = f"{type(e).__name__}: {e}"
            _log(f"configuration {method}({k}) FAILED: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
    _write_json(workdir / "failures.json", failures)
    base = {c: baseline[c] for c in ("map_known", "map_unknown", "map_all")}
    paths = stage_report(config, workdir, rows, base, latent, sources, variables, model, splits, test_cache,
                         manifest, progress)
    _log(f"done in {time.time() - t0:.0f}s; {len(rows)} runs, {len(failures)} failed configurations")
    return {"rows": rows, "baseline": base, "paths": paths, "failures": failures}


def main(argv=None) -> int:
    from absl import app, flags
    from ml_collections import config_flags

    from dng_jax import cli

    flags_ = flags.FLAGS

    def define():
        config_flags.DEFINE_config_file("config", str(DEFAULT_CONFIG),
                                        "Path to a configs/*.py file (default: configs/default.py).",
                                        lock_config=True)
        flags.DEFINE_string("workdir", "runs/sweep_default", "Directory for every stage's outputs.")
        flags.DEFINE_bool("progress", True, "Show progress bars.")

    def _main(args):
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments {args[1:]}")
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint operation at INFO
        from dng_jax.checkpointing import CheckpointError
        from dng_jax.dsb2018 import DataError

        try:
            out = run_sweep(flags_.config, flags_.workdir, progress=flags_.progress)
        except (DataError, CheckpointError, ConfigMismatchError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"\nbaseline and {len(out['rows'])} runs; table and figures in {Path(flags_.workdir).resolve()}:")
        for p in out["paths"]:
            print(f"  {p}")
        print()
        print((Path(flags_.workdir) / "table1.md").read_text())
        return 1 if out["failures"] else 0

    return cli.run(define, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
