"""The experiment's config files: ``paper.py`` (the paper's protocol), ``cpu_real.py`` (the real data at
CPU scale) and ``default.py`` (the embedded default). Installed as the package ``dng_jax.configs``."""
