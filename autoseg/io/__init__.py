"""Reading images and raw datasets: geometry-preserving image I/O, raw-layout discovery, validation."""
