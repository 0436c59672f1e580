"""Your own task in one file: an MLP on sklearn's wine data (``my_task.yaml`` runs it)."""

import torch
from sklearn.datasets import load_wine
from torch import nn
from torch.nn.functional import cross_entropy

from memtune.studies.runs import TaskRun


class WineRun(TaskRun):
    def __init__(self, options, seed, device):
        x, y = (torch.tensor(a, device=device) for a in load_wine(return_X_y=True))
        rows = torch.randperm(178, generator=torch.Generator().manual_seed(0)).to(device)
        self.rows = {"train": rows[:106], "val": rows[106:142], "test": rows[142:]}  # fixed
        train = x[self.rows["train"]]  # standardized with the training rows' statistics
        self.x, self.y, self.seed = ((x - train.mean(0)) / train.std(0)).float(), y, seed
        width = options.get("width", 32)
        self.model = nn.Sequential(nn.Linear(13, width), nn.ReLU(), nn.Linear(width, 3)).to(device)

    def batches(self, epoch):  # an order that depends on the seed and the epoch only
        order = torch.randperm(
            106, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch)
        )
        return self.rows["train"][order.to(self.x.device)].split(16)

    def loss(self, rows):
        return cross_entropy(self.model(self.x[rows]), self.y[rows])

    @torch.no_grad()
    def evaluate(self, split="val"):
        logits, y = self.model(self.x[self.rows[split]]), self.y[self.rows[split]]
        accuracy = (logits.argmax(1) == y).float().mean()
        return {
            f"{split}_loss": cross_entropy(logits, y).item(),
            f"{split}_accuracy": accuracy.item(),
        }


def build(options, seed, device):
    """What memtune calls in every trial; ``options`` is the spec's ``task_options``."""
    return WineRun(options, seed, device)
