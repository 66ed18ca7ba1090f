"""The deep-clustering experiment: clustering data and its latent (``features``), encoder retraining
on pseudo-labels (``retrain``), the resumable sweep (``sweep``, a driver over ``stages``; ``resume``,
``layout``), Table I and the figures (``report``, ``tsne``), any two configurations paired (``pairs``),
and the variants study over several sweeps (``variants_study``, ``stability``)."""
