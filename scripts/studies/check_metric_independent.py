"""Cross-check ``python -m dng_jax.evaluate`` against an independent Kaggle-kernel-style metric.

1. Builds ground-truth label images from the real DSB2018 zip (PIL straight from the zip; label k =
   k-th mask file in sorted name order; uint16).
2. Makes predictions by perturbing them with a fixed seed: erode / dilate / shift objects, drop some,
   merge neighbours, split some in two, add false blobs, relabel with non-consecutive ids, and leave a
   few predictions empty.
3. Writes both as 16-bit PNG folders, runs ``python -m dng_jax.evaluate`` on them in a subprocess
   (wall clock timed, Python start-up included) and compares every per-image score with the
   independent implementation below, which is written the way the public Kaggle kernels were
   (np.histogram2d intersections + ``precision_at``) and does not import dng_jax.evaluation.metrics.

    python scripts/studies/check_metric_independent.py --zip ../shared/data/dsb2018/stage1_train.zip [-n N]

Exits 1 if any per-image score differs by more than --tol (1e-6).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


# ----------------------------------------------------------------------------------------------------
# Independent metric, in the style of the Kaggle kernel "Example Metric Implementation" (W. Cukierski)
# ----------------------------------------------------------------------------------------------------

def kernel_iou(labels: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """IoU of every (true, pred) object pair via np.histogram2d; works for non-consecutive labels."""
    true_vals = np.union1d([0], np.unique(labels))
    pred_vals = np.union1d([0], np.unique(y_pred))
    true_edges = np.append(true_vals, true_vals[-1] + 1).astype(np.float64)
    pred_edges = np.append(pred_vals, pred_vals[-1] + 1).astype(np.float64)
    intersection = np.histogram2d(labels.flatten(), y_pred.flatten(), bins=(true_edges, pred_edges))[0]
    area_true = np.histogram(labels, bins=true_edges)[0]
    area_pred = np.histogram(y_pred, bins=pred_edges)[0]
    area_true = np.expand_dims(area_true, -1)
    area_pred = np.expand_dims(area_pred, 0)
    union = area_true + area_pred - intersection
    # Exclude background from the analysis
    intersection = intersection[1:, 1:]
    union = union[1:, 1:]
    union[union == 0] = 1e-9
    return intersection / union


def precision_at(threshold: float, iou: np.ndarray) -> tuple[int, int, int]:
    matches = iou > threshold
    true_positives = np.sum(matches, axis=1) == 1  # true objects with a match
    false_positives = np.sum(matches, axis=0) == 0  # predicted objects without a match
    false_negatives = np.sum(matches, axis=1) == 0  # true objects without a match
    return int(np.sum(true_positives)), int(np.sum(false_positives)), int(np.sum(false_negatives))


def kernel_score(labels: np.ndarray, y_pred: np.ndarray) -> float:
    iou = kernel_iou(labels, y_pred)
    n_true, n_pred = iou.shape
    if n_true == 0 and n_pred == 0:
        return 1.0
    prec = []
    for t in THRESHOLDS:
        tp, fp, fn = precision_at(t, iou)
        prec.append(tp / (tp + fp + fn))
    return float(np.mean(prec))


def loop_score(labels: np.ndarray, y_pred: np.ndarray) -> float:
    """Same metric with per-object-pair loops over boolean masks (slow; used on small images only)."""
    tl = [v for v in np.unique(labels) if v != 0]
    pl = [v for v in np.unique(y_pred) if v != 0]
    if not tl and not pl:
        return 1.0
    iou = np.zeros((len(tl), len(pl)))
    for i, a in enumerate(tl):
        ma = labels == a
        for j, b in enumerate(pl):
            mb = y_pred == b
            inter = np.logical_and(ma, mb).sum()
            if inter:
                iou[i, j] = inter / np.logical_or(ma, mb).sum()
    prec = []
    for t in THRESHOLDS:
        m = iou > t
        tp = int(m.any(axis=1).sum())
        prec.append(tp / (tp + (len(pl) - int(m.any(axis=0).sum())) + (len(tl) - tp)))
    return float(np.mean(prec))


# ----------------------------------------------------------------------------------------------------
# Ground truth from the zip, perturbed predictions
# ----------------------------------------------------------------------------------------------------

def load_ground_truth(zip_path: Path, n: int | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(zip_path) as zf:
        masks: dict[str, list[str]] = {}
        images: dict[str, str] = {}
        for name in zf.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[2].endswith(".png"):
                if parts[1] == "masks":
                    masks.setdefault(parts[0], []).append(name)
                elif parts[1] == "images":
                    images[parts[0]] = name
        ids = sorted(images)[:n] if n else sorted(images)
        for sid in ids:
            with Image.open(io.BytesIO(zf.read(images[sid]))) as im:
                w, h = im.size
            lab = np.zeros((h, w), np.uint16)
            for k, mname in enumerate(sorted(masks.get(sid, [])), start=1):
                m = np.asarray(Image.open(io.BytesIO(zf.read(mname)))) > 0
                if m.ndim == 3:
                    m = m.any(axis=-1)
                lab[m] = k
            out[sid] = lab
    return out


def perturb(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible-but-wrong prediction: each object eroded/dilated/shifted/dropped/merged/split."""
    h, w = gt.shape
    if rng.random() < 0.02:
        return np.zeros_like(gt)  # an empty prediction now and then
    pad = 4
    boxes = ndi.find_objects(gt)
    pred = np.zeros((h, w), np.int64)
    owner: dict[int, int] = {}  # gt id -> pred label given to it
    nxt = 1
    for a, box in enumerate(boxes, start=1):
        if box is None:
            continue
        sl = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, (h, w)))
        g = gt[sl]
        m = g == a
        r = rng.random()
        if r < 0.08:
            continue  # dropped
        if r < 0.25:
            m = ndi.binary_erosion(m, iterations=int(rng.integers(1, 3)))
        elif r < 0.40:
            m = ndi.binary_dilation(m, iterations=int(rng.integers(1, 3)))
        elif r < 0.55:
            m = np.roll(m, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        lab = None
        if rng.random() < 0.06:  # merge with an already painted touching neighbour
            ring = ndi.binary_dilation(g == a, iterations=2) & (g != a) & (g != 0)
            for nb in np.unique(g[ring]):
                if int(nb) in owner:
                    lab = owner[int(nb)]
                    break
        if lab is None:
            lab, nxt = nxt, nxt + 1
        owner[a] = lab
        p = pred[sl]
        if rng.random() < 0.07 and m.sum() > 20:  # split along the median row
            rows = np.nonzero(m)[0]
            top = m.copy()
            top[int(np.median(rows)):] = False
            p[top & (p == 0)] = lab
            m = m & ~top
            lab, nxt = nxt, nxt + 1
        p[m & (p == 0)] = lab
    for _ in range(int(rng.integers(0, 4))):  # false blobs in the background
        r = int(rng.integers(2, 8))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        yy, xx = np.ogrid[:h, :w]
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (pred == 0)
        pred[blob] = nxt
        nxt += 1
    used = np.unique(pred[pred > 0])
    if used.size and rng.random() < 0.5:  # non-consecutive, shuffled ids (still < 65536)
        new_ids = rng.choice(np.arange(1, 65536), size=used.size, replace=False)
        lut = np.zeros(int(pred.max()) + 1, np.int64)
        lut[used] = new_ids
        pred = lut[pred]
    return pred.astype(np.uint16)


def save_png16(path: Path, a: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(a.astype(np.uint16))).save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", default=str(Path(__file__).resolve().parents[2] / "shared/data/dsb2018/stage1_train.zip"),
                    help="Kaggle stage1_train.zip (default: ../shared/data/dsb2018/ next to the repository)")
    ap.add_argument("-n", type=int, default=0, help="number of images (0 = all)")
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--out", help="keep the gt/ and pred/ folders here (default: a temp dir)")
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--loop-check", type=int, default=40,
                    help="also check the kernel against per-pair loops on this many small images")
    args = ap.parse_args()

    t0 = time.perf_counter()
    gts = load_ground_truth(Path(args.zip), args.n or None)
    print(f"ground truth: {len(gts)} images, {sum(int(g.max()) for g in gts.values())} objects "
          f"({time.perf_counter() - t0:.1f} s)")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    preds = {sid: perturb(g, rng) for sid, g in gts.items()}
    print(f"predictions perturbed ({time.perf_counter() - t0:.1f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        (root / "gt").mkdir(parents=True, exist_ok=True)
        (root / "pred").mkdir(parents=True, exist_ok=True)
        for sid in gts:
            save_png16(root / "gt" / f"{sid}.png", gts[sid])
            save_png16(root / "pred" / f"{sid}.png", preds[sid])
        cmd = [sys.executable, "-m", "dng_jax.evaluate", "--gt", str(root / "gt"), "--pred",
               str(root / "pred"), "--json", str(root / "scores.json"), "--quiet", "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n")
            print(f"dng_jax.evaluate failed with exit code {proc.returncode}")
            return 1
        print(proc.stdout.strip())
        result = json.loads((root / "scores.json").read_text())

    t0 = time.perf_counter()
    ref = {sid: kernel_score(gts[sid], preds[sid]) for sid in gts}
    t_ref = time.perf_counter() - t0
    diffs = np.array([abs(result["per_image"][sid] - ref[sid]) for sid in gts])
    worst = list(gts)[int(diffs.argmax())]
    ref_map = float(np.mean(list(ref.values())))

    t0 = time.perf_counter()
    small = sorted(gts, key=lambda s: gts[s].size * max(1, int(gts[s].max())))[: args.loop_check]
    loop_diff = max((abs(loop_score(gts[s], preds[s]) - ref[s]) for s in small), default=0.0)
    t_loop = time.perf_counter() - t0

    print(f"images: {len(gts)}; evaluate mAP {result['map']:.6f}, kernel mAP {ref_map:.6f}")
    print(f"score spread: min {min(ref.values()):.4f}, max {max(ref.values()):.4f}; "
          f"empty predictions: {sum(int(p.max() == 0) for p in preds.values())}")
    print(f"max |evaluate - kernel| per image: {diffs.max():.3e} (image {worst})")
    print(f"max |kernel - per-pair loops| on {len(small)} small images: {loop_diff:.3e} "
          f"({t_loop:.1f} s)")
    print(f"python -m dng_jax.evaluate wall time: {wall:.2f} s (subprocess, incl. start-up and PNG reads); "
          f"kernel reference: {t_ref:.2f} s")
    ok = diffs.max() <= args.tol and loop_diff <= args.tol and abs(result["map"] - ref_map) <= args.tol
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
