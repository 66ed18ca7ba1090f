#!/usr/bin/env python
"""The pilot's verdict under the decision rule of docs/results.md, and every per-image score in one CSV.

    python scripts/studies/pilot_verdict.py --workdir runs/pilot --scores scores.csv --json verdict.json

Reads a finished sweep's work dir (configs/paper_pilot.py: one configuration, its runs and ensemble, the
baseline with its runs and views, the classical reference) and writes:

- ``--scores``: one row per network and image: ``network, image, cell_type, split (test / val), score``
  (the networks: ``baseline`` and its runs, ``baseline + <view>``, ``classical``, ``<method>(<k>) seed <s>``,
  ``<method> ensemble(<k>)``);
- ``--json``: the verdict (:func:`dng_jax.experiment.decision.decide`) with its numbers, for the
  configuration's runs on the test images.

Exit status 0; 2 with one line when the work dir holds no finished configuration.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from dng_jax.experiment.decision import decide
from dng_jax.experiment.report import ENSEMBLE, read_sweep_scores
from dng_jax.io.atomic import atomic_write_text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="the pilot's sweep work dir")
    ap.add_argument("--scores", default=None, help="write every per-image score here (CSV)")
    ap.add_argument("--json", default=None, help="write the verdict here")
    a = ap.parse_args()
    scores = read_sweep_scores(a.workdir)
    confs = [key for key in (scores.runs if scores else {}) if not key[0].endswith(ENSEMBLE)]
    if not confs:
        print(f"error: {a.workdir}: no finished configuration with per-image scores", file=sys.stderr)
        return 2
    split = {i: "test" for ids in scores.test.values() for i in ids}
    split.update({i: "val" for ids in scores.val.values() for i in ids})
    if a.scores:
        labeled = [(run, table, i) for table in (scores.baseline, scores.classical) if table is not None
                   for i, run in enumerate(table.runs)]
        labeled += [(name, table, 0) for name, table in scores.references.items()]
        for (method, k), table in scores.runs.items():
            ensemble = method.endswith(ENSEMBLE)
            labeled += [(f"{method.removesuffix(ENSEMBLE)} ensemble({k})" if ensemble else f"{method}({k}) seed {run}",
                         table, i) for i, run in enumerate(table.runs)]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["network", "image", "cell_type", "split", "score"])
        for label, table, i in labeled:
            w.writerows([label, sid, ctype, split.get(sid, ""), f"{score:.6f}"]
                        for sid, ctype, score in zip(table.ids, table.types, table.scores[i]))
        atomic_write_text(a.scores, out.getvalue())
    known = list(scores.test.get(scores.known_type, []))
    unknown = [i for t, ids in sorted(scores.test.items()) if t != scores.known_type for i in ids]
    results = {f"{m}({k})": decide(scores.baseline, scores.runs[(m, k)], known, unknown) for m, k in confs}
    text = json.dumps(results, indent=1)
    print(text)
    if a.json:
        atomic_write_text(a.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
