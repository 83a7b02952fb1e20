"""Training data: preprocessed cases, patch sampling, augmentation, reproducible batches.

- :class:`PreprocessedCases` opens a configuration's cases lazily (memory-mapped);
- :class:`PatchSampler` draws crops like nnU-Net (uniform cases, foreground oversampling,
  enlarged crops padded with 0 / -1);
- :class:`Augmenter` draws (:meth:`~Augmenter.draw`) and applies
  (:meth:`~Augmenter.apply`, :meth:`~Augmenter.apply_batch`) nnU-Net's default training
  augmentation, computing the spatial transform for the output patch only;
- :class:`BatchDataset` / :func:`make_loader`: batch ``k`` is built from
  ``default_rng([seed, stream, k])``, so training resumes exactly and does not depend on
  the number of workers.
"""

from autoseg.data.augment import AugmentConfig, Augmenter, AugmentParams
from autoseg.data.cases import PreprocessedCases
from autoseg.data.loader import BatchDataset, make_loader
from autoseg.data.sampling import CropSpec, PatchSampler, enlarged_crop_size

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "Augmenter",
    "BatchDataset",
    "CropSpec",
    "PatchSampler",
    "PreprocessedCases",
    "enlarged_crop_size",
    "make_loader",
]
