"""Derived seeds: independent, reproducible random streams from one seed and a name or an index."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, key: int | str) -> int:
    """A 31-bit seed from ``seed`` and ``key`` (an index, or a name read as the integer of its UTF-8 bytes).

    Different keys give unrelated streams, and a key's seed depends on nothing but (seed, key): adding or
    reordering other keys (collection rounds, training stages) never changes it.
    """
    if isinstance(key, str):
        key = int.from_bytes(key.encode(), "little")
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0] >> 1)
