"""t-SNE of the latent space (dng_jax/experiment/tsne.py, the paper's Fig. 2)."""

from __future__ import annotations

import jax
import numpy as np

from dng_jax.experiment.tsne import tsne


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 16))
    lab = np.repeat(np.arange(3), 30)
    x = centres[lab] + rng.normal(0, 1, (90, 16))
    y = tsne(x, jax.random.key(0), perplexity=10, steps=400)
    assert y.shape == (90, 2) and np.isfinite(y).all()
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95
