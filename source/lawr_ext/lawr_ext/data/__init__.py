"""Offline datasets: HDF5 on disk, TensorDict batches of action chunks in memory.

    keys.py         the batch contract every learner reads
    episodes.py     ``Episodes`` (whole episodes in memory) and ``DatasetError``
    hdf5.py         Isaac Lab / robomimic HDF5 layout and its reader (h5py only: training needs no Isaac Lab)
    hdf5_writer.py  crash-safe shard writer (Isaac Lab's HDF5DatasetFileHandler; collection only)
    plain.py        the plain D4RL-style format for users' own data (see docs/data.md)
    dataset.py      ``load_episodes`` (any format) and ``ChunkDataset`` (chunk batches, sampler state, stats)
    collect.py      resumable scripted-expert collection in a vectorized env
"""
