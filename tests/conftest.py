import os

import pytest
import torch

# Tests are tiny: one thread per process avoids oversubscribing CI's 2 cores (measured 23 s -> 2.5 s for a pipeline).
torch.set_num_threads(int(os.environ.get("LAWR_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
