"""The 3d cascade: previous-stage maps for the next stage, and their one-hot encoding."""
