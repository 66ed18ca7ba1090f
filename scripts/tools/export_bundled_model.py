"""Ship a trained baseline inside the package: ``dng_jax/segmentation/weights/<name>.npz`` + ``.json``.

    python scripts/tools/export_bundled_model.py --workdir runs/baseline_cpu_real [--name cpu_real]

Reads the latest checkpoint of the training work dir and, where present, its ``baseline.json`` (the
MAP on the test images of the config's protocol) and ``baseline_tta.json`` (the same with test-time
augmentation, from ``python -m dng_jax.evaluate checkpoint --checkpoint WORKDIR --tta --output
WORKDIR/baseline_tta.json``). The JSON records the config, the commit of this checkout, the data (file
name, size and SHA-256 of ``data.path``), the MAP and the training time, so ``python -m dng_jax.predict
--model-info`` says where the default model came from.

It writes into this checkout's package folder and asks its git for the commit: run it from a checkout
installed with ``pip install -e .``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from dng_jax.segmentation.bundled import DEFAULT_MODEL, WEIGHTS_DIR, load_bundled, save_bundled
from dng_jax.segmentation.checkpointing import load_checkpoint
from dng_jax.typed_config import as_dict

ROOT = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="training work dir (python -m dng_jax.train --workdir)")
    ap.add_argument("--name", default=DEFAULT_MODEL)
    ap.add_argument("--config-file", default="configs/cpu_real.py", help="recorded as where the config came from")
    ap.add_argument("--note", default="", help="recorded free text (e.g. the command that trained it)")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="predict's default for this model (stored as eval.tta; default: the training config's)")
    a = ap.parse_args()
    workdir = Path(a.workdir)
    state, meta, config = load_checkpoint(workdir)
    data = Path(config.data.path) if config.data.path else None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    def read_map(path: Path) -> dict:
        scores = json.loads(path.read_text()) if path.exists() else {}
        return {k: scores[k] for k in ("known", "unknown", "all", "n_known", "n_unknown", "per_type") if k in scores}

    if a.tta is not None:
        config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, tta=a.tta))
    provenance = {
        "name": a.name, "config_file": a.config_file, "commit": commit, "step": int(meta.get("global_step", -1)),
        "exported": time.strftime("%Y-%m-%d"),
        "data": ({"file": data.name, "bytes": data.stat().st_size, "sha256": sha256(data)} if data and data.is_file()
                 else str(data) if data else "bundled mini-set"),
        "protocol": config.data.protocol, "tta": config.eval.tta,
        "map": read_map(workdir / "baseline.json"),  # test images of the protocol, no TTA
        "map_tta": read_map(workdir / "baseline_tta.json"),  # the same with TTA (python -m dng_jax.evaluate checkpoint)
        "note": a.note,
    }
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    path = save_bundled(variables, as_dict(config), provenance, a.name, WEIGHTS_DIR)
    loaded, _, _ = load_bundled(a.name, WEIGHTS_DIR)  # loads back, fits the model
    err = max(float(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)).max())
              for x, y in zip(jax.tree_util.tree_leaves(jax.device_get(variables)), jax.tree_util.tree_leaves(loaded)))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) and {path.with_suffix('.json')}; "
          f"largest float16 rounding {err:.2e}")


if __name__ == "__main__":
    main()
