"""Shared fixtures. Inputs come from tests/inputs.py (a table keyed by each option's
documented shape), definitions from tests/naive.py, the tolerance rule from tests/helpers.py."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    """``LONGMIX_TEST_CONFIG`` (JSON, e.g. ``{"_delta": {"inv_tf32": 4}, "chunk": {"khat_walk": true}}``): run the
    tests with those kernel settings (``longmix.kernels.triton``'s ``chunk``, ``_delta`` and ``_gla`` ``CONFIG``
    tables) in place of the defaults, to test a setting on a GPU before it becomes one. Lists become tuples.
    (It imports Triton here: on a machine without CUDA set TRITON_INTERPRET=1 as well.)"""
    import json
    import os

    wanted = json.loads(os.environ.get("LONGMIX_TEST_CONFIG") or "{}")
    if not wanted:
        return
    from longmix.kernels.triton import configure

    try:
        configure(wanted)
    except KeyError as e:
        raise pytest.UsageError(f"LONGMIX_TEST_CONFIG: {e.args[0]}") from None


def pytest_report_header(config):
    import os

    if os.environ.get("LONGMIX_TEST_CONFIG"):
        return f"kernel settings changed for this run: LONGMIX_TEST_CONFIG={os.environ['LONGMIX_TEST_CONFIG']}"
