"""One local Ray for the modules of this package that run studies in this process (starting
and stopping one costs seconds): they ask for it with ``pytest.mark.usefixtures("local_ray")``."""

from __future__ import annotations

import pytest

from memtune.tuning.cluster import ray_cluster


@pytest.fixture(scope="package")
def local_ray():
    with ray_cluster(num_cpus=2):
        yield
