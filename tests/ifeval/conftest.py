import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: in-process runs then add their floats in the same order
    as the one-thread subprocesses they are compared with."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
