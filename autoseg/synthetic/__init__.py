"""Synthetic segmentation datasets (nnU-Net v2 raw layout) for the demo, tests and benchmarks."""
