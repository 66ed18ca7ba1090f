"""dng-jax: Deep Neural-Gas clustering for nuclei instance segmentation (Grüning & Madany Mamlouk), in JAX."""

__version__ = "0.1.0"
