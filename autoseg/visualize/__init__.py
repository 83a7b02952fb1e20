"""Overlay PNGs of images and masks for quality control."""
