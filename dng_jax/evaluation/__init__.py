"""Evaluation: the Kaggle DSB2018 metric (``metrics``), the segmentation evaluator built from the config
(``evaluator``), and scoring folders of label images (``folders``)."""
