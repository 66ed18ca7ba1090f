"""Data: the DSB2018 reader (``dsb2018``), cell types and splits (``partition``), 3-class targets
(``targets``), the paper's augmentation (``augment``), crop batches (``pipeline``), a TFDS copy
(``tfds_builder``, ``tfds_pipeline``), and what a collection holds (``summary``, ``export``)."""
