"""The stages of a sweep, one module each, in the order the driver (:mod:`dng_jax.experiment.sweep`)
runs them: ``data`` (the images, ``test_set.json``, the scoring), ``baseline`` (and its other trainings
and views), ``classical``, ``cluster_data``, ``configuration`` (one configuration: cluster, retrain,
score; the ensemble), ``report``. Each takes a :class:`~dng_jax.experiment.stages.context.StageContext`."""
