import os

import pytest
import torch

# Tests are sized for 2 CPU cores; more threads only add contention.
torch.set_num_threads(int(os.environ.get("LAWR_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
