"""Evaluation: the Kaggle DSB2018 metric (``metrics``), the segmentation evaluator built from the config
(``evaluator``), scoring folders of label images (``folders``), and trained networks compared from their
per-image scores (``networks``, ``seeds``, ``checkpoint``)."""
