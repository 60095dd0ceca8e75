"""Distillation tests run torch on one thread: their many small ops are many times faster on one of 2 shared
cores than spread over both."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
