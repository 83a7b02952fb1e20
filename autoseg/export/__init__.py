"""Shipping a trained model: archives, network exports (ONNX), the challenge container, the model card."""
