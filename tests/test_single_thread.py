import pytest
import torch

pytestmark = pytest.mark.usefixtures("single_thread")


def test_modules_that_opt_in_run_on_one_thread():
    assert torch.get_num_threads() == 1
