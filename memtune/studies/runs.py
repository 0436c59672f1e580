"""What a task does for one trial: its model, its batches, its loss and its metrics (torch).

A task's registry entry (``memtune.studies.tasks``) names one of the builders here; a builder
takes the task's parsed options, a seed and a device, and gives a :class:`TaskRun`: the model,
the batches of an epoch (the order depends on the seed and the epoch only, so a resumed trial
sees the same batches), the loss of a batch, and the validation metrics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from memtune.studies import datasets, landscapes
from memtune.studies.task_options import (
    CharLMOptions,
    DigitsOptions,
    FashionOptions,
    LandscapeOptions,
    LogregOptions,
    QuadraticOptions,
    SharpFlatOptions,
)

__all__ = ["CharLMRun", "FunctionRun", "Split", "SupervisedRun", "TaskRun"]

Split = Literal["val", "test"]


class TaskRun:
    """One trial's model and data. Subclasses define the batches, the loss and the metrics."""

    model: nn.Module

    def batches(self, epoch: int) -> Iterator[Any]:
        raise NotImplementedError

    def loss(self, batch: Any) -> Tensor:
        raise NotImplementedError

    def evaluate(self, split: Split = "val") -> dict[str, float]:
        """The task's metrics on ``split``, keyed ``val_*`` or ``test_*``. Tasks without
        held-out data (the test functions) report their objective whatever the split."""
        raise NotImplementedError


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


# --------------------------------------------------------------------------------------------
# Supervised tasks
# --------------------------------------------------------------------------------------------


class SupervisedRun(TaskRun):
    """Mini-batch training on a fixed split; classification or binary logistic regression."""

    def __init__(
        self,
        model: nn.Module,
        split: datasets.SplitData,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        binary: bool = False,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
    ) -> None:
        self.model = model.to(device)
        self.seed, self.batch_size, self.binary = seed, batch_size, binary
        self.train_x, self.train_y = (
            split.train_x[:train_size].to(device),
            split.train_y[:train_size].to(device),
        )
        self.held_out = {
            "val": (split.val_x[:val_size].to(device), split.val_y[:val_size].to(device)),
            "test": (split.test_x[:test_size].to(device), split.test_y[:test_size].to(device)),
        }

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.train_x), generator=_epoch_generator(self.seed, epoch))
        order = order.to(self.train_x.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.train_x[index], self.train_y[index]

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.binary:
            return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), targets)
        return nn.functional.cross_entropy(logits, targets)

    def loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, targets = batch
        return self._loss(self.model(inputs), targets)

    @torch.no_grad()
    def evaluate(self, split: Split = "val") -> dict[str, float]:
        x, y = self.held_out[split]
        self.model.eval()
        total_loss, correct = 0.0, 0
        for start in range(0, len(x), 1024):
            inputs, targets = x[start : start + 1024], y[start : start + 1024]
            logits = self.model(inputs)
            total_loss += float(self._loss(logits, targets)) * len(inputs)
            predicted = (logits.squeeze(-1) > 0).float() if self.binary else logits.argmax(-1)
            correct += int((predicted == targets).sum())
        self.model.train()
        return {f"{split}_loss": total_loss / len(x), f"{split}_accuracy": correct / len(x)}


def _seeded(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """The model's initial weights depend on the seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def logreg(options: LogregOptions, seed: int, device: torch.device) -> TaskRun:
    split = datasets.breast_cancer()
    model = _seeded(seed, lambda: nn.Linear(split.train_x.shape[1], 1))
    return SupervisedRun(
        model,
        split,
        batch_size=options.batch_size,
        seed=seed,
        device=device,
        binary=True,
        train_size=options.train_size,
    )


def digits_mlp(options: DigitsOptions, seed: int, device: torch.device) -> TaskRun:
    split = datasets.digits()
    model = _seeded(seed, lambda: _mlp([64, options.width, options.width, 10]))
    return SupervisedRun(
        model,
        split,
        batch_size=options.batch_size,
        seed=seed,
        device=device,
        train_size=options.train_size,
    )


def fashion_mlp(options: FashionOptions, seed: int, device: torch.device) -> TaskRun:
    model = _seeded(seed, lambda: _mlp([784, options.width, options.width, 10]))
    return SupervisedRun(
        model,
        datasets.fashion_mnist(),
        batch_size=options.batch_size,
        seed=seed,
        device=device,
        train_size=options.train_size,
        val_size=options.val_size,
        test_size=options.test_size,
    )


def fashion_cnn(options: FashionOptions, seed: int, device: torch.device) -> TaskRun:
    c = options.width

    def make() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, 10),
        )

    return SupervisedRun(
        _seeded(seed, make),
        datasets.fashion_mnist(),
        batch_size=options.batch_size,
        seed=seed,
        device=device,
        train_size=options.train_size,
        val_size=options.val_size,
        test_size=options.test_size,
    )


# --------------------------------------------------------------------------------------------
# Character-level language model
# --------------------------------------------------------------------------------------------


class _CharLSTM(nn.Module):
    def __init__(self, vocabulary: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocabulary)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.lstm(self.embed(ids))[0])


class CharLMRun(TaskRun):
    """Next-character prediction on the stdlib's pydoc text (the CM paper's PTB setting, small)."""

    def __init__(self, options: CharLMOptions, seed: int, device: torch.device) -> None:
        ids, alphabet = datasets.english_text()
        n_held = min(options.val_chars, len(ids) // 10)  # of validation, and as much test
        train, val, test = datasets.english_text_split(n_held)
        self.train_ids = train[: options.train_chars or len(train)].to(device)
        self.held_out = {"val": val.to(device), "test": test.to(device)}
        self.options, self.seed = options, seed
        self.model = _seeded(
            seed, lambda: _CharLSTM(len(alphabet), options.embed, options.hidden)
        ).to(device)

    def _windows(self, ids: Tensor) -> Tensor:
        n = (len(ids) - 1) // self.options.seq_len
        return ids[: n * self.options.seq_len + 1]

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        ids, length = self._windows(self.train_ids), self.options.seq_len
        starts = (
            torch.randperm((len(ids) - 1) // length, generator=_epoch_generator(self.seed, epoch))
            * length
        )
        offsets = torch.arange(length)
        for first in range(0, len(starts), self.options.batch_size):
            index = (starts[first : first + self.options.batch_size, None] + offsets).to(ids.device)
            yield ids[index], ids[index + 1]

    def loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, targets = batch
        logits = self.model(inputs)
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )

    @torch.no_grad()
    def evaluate(self, split: Split = "val") -> dict[str, float]:
        ids, length = self._windows(self.held_out[split]), self.options.seq_len
        n = (len(ids) - 1) // length
        inputs, targets = ids[:-1].reshape(n, length), ids[1:].reshape(n, length)
        loss = float(self.loss((inputs, targets)))
        return {f"{split}_loss": loss, f"{split}_perplexity": math.exp(min(loss, 50.0))}


# --------------------------------------------------------------------------------------------
# Full-batch problems: the quadratic and the test functions (random start chosen by the seed)
# --------------------------------------------------------------------------------------------


class _Point(nn.Module):
    def __init__(self, start: Tensor) -> None:
        super().__init__()
        self.point = nn.Parameter(start.clone())


class FunctionRun(TaskRun):
    """Minimizes ``function(point)`` from a seeded start; ``noise`` adds Gaussian gradient noise."""

    def __init__(
        self,
        function: Callable[[Tensor], Tensor],
        start: Tensor,
        *,
        steps_per_epoch: int,
        noise: float,
        seed: int,
        device: torch.device,
        metrics: Callable[[Tensor], dict[str, float]],
    ) -> None:
        self.model = _Point(start).to(device)
        self.function, self.noise, self.metrics = function, noise, metrics
        self.steps_per_epoch, self.seed = steps_per_epoch, seed

    def batches(self, epoch: int) -> Iterator[Tensor | None]:
        generator = _epoch_generator(self.seed, epoch)
        for _ in range(self.steps_per_epoch):
            if self.noise:
                yield (self.noise * torch.randn(self.model.point.shape, generator=generator)).to(
                    self.model.point.device
                )
            else:
                yield None

    def loss(self, batch: Tensor | None) -> Tensor:
        value = self.function(self.model.point).sum()
        if batch is not None:  # a linear term whose gradient is the noise
            value = value + (batch * self.model.point).sum()
        return value

    @torch.no_grad()
    def evaluate(self, split: Split = "val") -> dict[str, float]:
        point = self.model.point.detach()
        return {"value": float(self.function(point).sum()), **self.metrics(point.cpu())}


def quadratic(options: QuadraticOptions, seed: int, device: torch.device) -> TaskRun:
    curvature = torch.logspace(0, math.log10(options.condition), options.dim).to(device)
    start = torch.randn(options.dim, generator=torch.Generator().manual_seed(seed))
    return FunctionRun(
        lambda x: 0.5 * (curvature * x**2).sum(),
        start,
        steps_per_epoch=options.steps_per_epoch,
        noise=0.0,
        seed=seed,
        device=device,
        metrics=lambda x: {"distance": float(x.norm())},
    )


def _boxed_landscape(
    function: Callable[[Tensor], Tensor], half_width: float, minimum: tuple[float, float]
) -> Callable[[LandscapeOptions, int, torch.device], TaskRun]:
    """A 2-D test function started uniformly in [-w, w]^2 (the seed picks where); reports the
    distance to its global minimum."""
    target = torch.tensor(minimum)

    def build(options: LandscapeOptions, seed: int, device: torch.device) -> TaskRun:
        start = (torch.rand(2, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * half_width
        return FunctionRun(
            function,
            start,
            steps_per_epoch=options.steps_per_epoch,
            noise=options.noise,
            seed=seed,
            device=device,
            metrics=lambda x: {"distance": float((x - target).norm())},
        )

    return build


goldstein_price = _boxed_landscape(landscapes.goldstein_price, 2.0, (0.0, -1.0))
ackley = _boxed_landscape(landscapes.ackley, 3.0, (0.0, 0.0))


def sharp_flat(options: SharpFlatOptions, seed: int, device: torch.device) -> TaskRun:
    start = torch.randn(1, generator=torch.Generator().manual_seed(seed)) * 0.5 / options.sharpness
    return FunctionRun(
        lambda x: landscapes.sharp_flat(x, options.sharpness),
        start,
        steps_per_epoch=options.steps_per_epoch,
        noise=options.noise,
        seed=seed,
        device=device,
        metrics=lambda x: {"escaped": float(abs(float(x[0]) - 3) < 0.5)},
    )
