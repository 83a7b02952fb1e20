"""autoseg: self-configuring medical image segmentation.

The package follows the pipeline stages: ``io`` (read and validate a raw dataset),
``fingerprint``, ``planning``, ``preprocessing``; each stage writes one JSON artifact with
a ``schema_version``.
"""

__version__ = "0.1.0"
