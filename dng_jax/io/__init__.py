"""File I/O at the edges: atomic writes (``atomic``), label images (``labels``), Kaggle run-length CSVs
(``rle``), input images (``images``), data matrices (``arrays``), work dirs and their lock (``workdir``)."""
