"""Shared fixtures. Inputs come from tests/inputs.py (a table keyed by each option's
documented shape), definitions from tests/naive.py, the tolerance rule from tests/helpers.py."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
