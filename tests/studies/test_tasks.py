"""Tasks: every one trains at smoke size, deterministically, from offline data."""

from __future__ import annotations

import gzip
import math
import time

import numpy as np
import pytest
import torch

from memtune.studies import datasets
from memtune.studies.tasks import TASKS, get_task

FASHION = {"fashion_mlp", "fashion_cnn"}


def _fashion_available() -> bool:
    try:
        datasets.fashion_mnist()
    except datasets.DatasetMissingError:
        return False
    return True


def _skip_without_data(name: str) -> None:
    if name in FASHION and not _fashion_available():
        pytest.skip(
            f"Fashion-MNIST not installed ({datasets.FASHION_MNIST_DEFAULT}); .ci/run installs it"
        )


@pytest.mark.parametrize("name", TASKS.names())
def test_task_trains_one_smoke_epoch_with_finite_metrics(name):
    _skip_without_data(name)
    spec = get_task(name)
    run = spec.create(None, seed=0, smoke=True)
    optimizer = torch.optim.Adam(run.model.parameters(), lr=1e-3)
    start = time.perf_counter()
    losses = []
    for batch in run.batches(0):
        optimizer.zero_grad()
        loss = run.loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    metrics = run.evaluate()
    assert time.perf_counter() - start < 10  # smoke size: about a second; generous for CI noise
    assert losses and all(math.isfinite(v) for v in losses)
    assert set(metrics) >= set(spec.metrics)
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", TASKS.names())
def test_same_seed_gives_same_model_and_batches(name):
    _skip_without_data(name)
    spec = get_task(name)
    first, second = spec.create(None, seed=3, smoke=True), spec.create(None, seed=3, smoke=True)
    for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
    a, b = next(iter(first.batches(1))), next(iter(second.batches(1)))
    assert torch.equal(first.loss(a).detach(), second.loss(b).detach())


def test_seed_picks_the_start_of_a_landscape():
    spec = get_task("goldstein_price")
    starts = {tuple(spec.create(None, seed=s).model.point.tolist()) for s in range(5)}
    assert len(starts) == 5
    assert all(-2 <= c <= 2 for start in starts for c in start)


def test_read_idx_parses_header_and_data(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + array.tobytes()))
    assert np.array_equal(datasets.read_idx(path), array)


def test_missing_fashion_mnist_names_both_places(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(tmp_path))
    datasets.fashion_mnist.cache_clear()
    try:
        with pytest.raises(datasets.DatasetMissingError) as error:
            datasets.fashion_mnist()
    finally:
        datasets.fashion_mnist.cache_clear()
    assert datasets.FASHION_MNIST_ENV in str(error.value)
    assert str(datasets.FASHION_MNIST_DEFAULT) in str(error.value)
