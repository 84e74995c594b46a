"""Tiny networks gain nothing from several threads and lose a lot on a shared CPU."""

import os

import pytest
import torch

os.environ.setdefault("RLHFKIT_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
