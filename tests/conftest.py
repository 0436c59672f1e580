"""Shared fixtures and the device parametrization (CUDA tests skip without a GPU)."""

from __future__ import annotations

import os

import pytest
import torch

# Under pytest-xdist (``make test``: two test processes on 2 cores) each process gets its share
# of the cores: torch's OpenMP threads spin-wait when they outnumber the cores, and a 0.2 ms
# optimizer step then took 50 ms (measured with the other cores busy).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(
        max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    )

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param
