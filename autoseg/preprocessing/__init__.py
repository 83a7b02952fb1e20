"""Preprocessing: crop to the non-zero region, normalize, resample, store (resumable).

The main entry points are :func:`autoseg.preprocessing.preprocess.preprocess_dataset`,
:func:`~autoseg.preprocessing.preprocess.preprocess_case` and its inverse for predictions,
:func:`~autoseg.preprocessing.preprocess.revert_preprocessing`.
"""
