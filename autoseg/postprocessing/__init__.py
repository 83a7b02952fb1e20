"""What runs after the network at predict time: ensembling, temperature, connected components."""
