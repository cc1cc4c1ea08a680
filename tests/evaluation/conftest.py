"""Evaluation tests train tiny networks: one intra-op thread (two spin-wait on shared CPUs)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
