"""Offline datasets: HDF5 on disk, TensorDict batches of action chunks in memory.

    keys.py      the batch contract every learner reads
    episodes.py  ``Episodes`` (whole episodes in memory) and ``DatasetError``
    hdf5.py      Isaac Lab / robomimic HDF5 layout: crash-safe shard writer and reader
    plain.py     the plain D4RL-style format for users' own data (see FORMAT.md)
    dataset.py   ``load_episodes`` (any format) and ``ChunkDataset`` (chunk batches, sampler state, stats)
    collect.py   resumable scripted-expert collection in a vectorized env
"""
