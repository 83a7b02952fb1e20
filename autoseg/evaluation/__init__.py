"""Evaluation: overlap metrics (and later evaluation, post-processing, configuration selection)."""
