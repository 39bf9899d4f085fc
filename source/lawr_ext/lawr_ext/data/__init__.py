"""Offline datasets: HDF5 on disk, TensorDict batches of action chunks in memory."""
