"""Segmentation (paper II-C): the train state and LAMB (``train_state``), pure train / eval steps
(``steps``), checkpoints (``checkpointing``), the training driver (``trainer``), whole-image prediction
(``inference``) and the paper's watershed (``postprocess``)."""
