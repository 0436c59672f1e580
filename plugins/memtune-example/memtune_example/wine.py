"""The wine task's builder: memtune's supervised run over sklearn's wine data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from memtune.studies.datasets import fixed_split
from memtune.studies.runs import SupervisedRun


def build(options, seed: int, device: torch.device) -> SupervisedRun:
    from sklearn.datasets import load_wine

    data = load_wine()
    split = fixed_split(data.data, data.target.astype(np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(13, options.width), nn.ReLU(), nn.Linear(options.width, 3))
    return SupervisedRun(model, split, batch_size=options.batch_size, seed=seed, device=device)
