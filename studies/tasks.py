"""The task registry: a model, its data and its metrics, all offline.

A task is built for one trial (``spec.build(options, seed, device)``) and gives a
:class:`TaskRun`: the model, the batches of an epoch (the order depends on the seed and the
epoch only, so a resumed trial sees the same batches), the loss of a batch, and the
validation metrics. Every task has a smoke size that trains an epoch in about a second.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from optimizers import Registry
from studies import datasets, landscapes

__all__ = ["TASKS", "TaskRun", "TaskSpec", "get_task"]


class TaskRun:
    """One trial's model and data. Subclasses define the batches, the loss and the metrics."""

    model: nn.Module

    def batches(self, epoch: int) -> Iterator[Any]:
        raise NotImplementedError

    def loss(self, batch: Any) -> Tensor:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    options: type[BaseModel]
    build: Callable[[Any, int, torch.device], TaskRun]
    metric: str  # the default metric of a study
    mode: Literal["min", "max"]
    metrics: tuple[str, ...]  # everything evaluate() returns
    smoke: Mapping[str, Any] = field(default_factory=dict)
    needs: str | None = None  # what must be installed, for the error message

    def parse_options(
        self, options: Mapping[str, Any] | None = None, *, smoke: bool = False
    ) -> BaseModel:
        return self.options(**{**(self.smoke if smoke else {}), **(options or {})})

    def create(
        self,
        options: Mapping[str, Any] | None,
        seed: int,
        device: str | torch.device = "cpu",
        *,
        smoke: bool = False,
    ) -> TaskRun:
        return self.build(self.parse_options(options, smoke=smoke), seed, torch.device(device))


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        split: datasets.Split,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        binary: bool = False,
        train_size: int | None = None,
        val_size: int | None = None,
    ) -> None:
        self.model = model.to(device)
        self.seed, self.batch_size, self.binary = seed, batch_size, binary
        self.train_x, self.train_y = (
            split.train_x[:train_size].to(device),
            split.train_y[:train_size].to(device),
        )
        self.val_x, self.val_y = (
            split.val_x[:val_size].to(device),
            split.val_y[:val_size].to(device),
        )

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
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        total_loss, correct = 0.0, 0
        for start in range(0, len(self.val_x), 1024):
            inputs, targets = self.val_x[start : start + 1024], self.val_y[start : start + 1024]
            logits = self.model(inputs)
            total_loss += float(self._loss(logits, targets)) * len(inputs)
            predicted = (logits.squeeze(-1) > 0).float() if self.binary else logits.argmax(-1)
            correct += int((predicted == targets).sum())
        self.model.train()
        return {"val_loss": total_loss / len(self.val_x), "val_accuracy": correct / len(self.val_x)}


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


class LogregOptions(Options):
    batch_size: int = Field(32, ge=1)
    train_size: int | None = Field(None, ge=2)


def _logreg(options: LogregOptions, seed: int, device: torch.device) -> TaskRun:
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


class DigitsOptions(Options):
    batch_size: int = Field(64, ge=1)
    width: int = Field(64, ge=1)
    train_size: int | None = Field(None, ge=2)


def _digits_mlp(options: DigitsOptions, seed: int, device: torch.device) -> TaskRun:
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


class FashionOptions(Options):
    batch_size: int = Field(128, ge=1)
    width: int = Field(
        256, ge=1, description="hidden width (MLP) or channels of the first conv (CNN)"
    )
    train_size: int | None = Field(None, ge=2)
    val_size: int | None = Field(None, ge=1)


def _fashion_mlp(options: FashionOptions, seed: int, device: torch.device) -> TaskRun:
    model = _seeded(seed, lambda: _mlp([784, options.width, options.width, 10]))
    return SupervisedRun(
        model,
        datasets.fashion_mnist(),
        batch_size=options.batch_size,
        seed=seed,
        device=device,
        train_size=options.train_size,
        val_size=options.val_size,
    )


def _fashion_cnn(options: FashionOptions, seed: int, device: torch.device) -> TaskRun:
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
    )


# --------------------------------------------------------------------------------------------
# Character-level language model
# --------------------------------------------------------------------------------------------


class CharLMOptions(Options):
    batch_size: int = Field(32, ge=1)
    seq_len: int = Field(64, ge=2)
    embed: int = Field(32, ge=1)
    hidden: int = Field(128, ge=1)
    train_chars: int | None = Field(
        None, ge=1000, description="characters of training text (default: 90%)"
    )
    val_chars: int = Field(20_000, ge=100)


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
        n_val = min(options.val_chars, len(ids) // 10)
        train_end = len(ids) - n_val
        self.train_ids = ids[: min(train_end, options.train_chars or train_end)].to(device)
        self.val_ids = ids[train_end:].to(device)
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
    def evaluate(self) -> dict[str, float]:
        ids, length = self._windows(self.val_ids), self.options.seq_len
        n = (len(ids) - 1) // length
        inputs, targets = ids[:-1].reshape(n, length), ids[1:].reshape(n, length)
        loss = float(self.loss((inputs, targets)))
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0))}


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
    def evaluate(self) -> dict[str, float]:
        point = self.model.point.detach()
        return {"value": float(self.function(point).sum()), **self.metrics(point.cpu())}


class QuadraticOptions(Options):
    dim: int = Field(50, ge=1)
    condition: float = Field(100.0, ge=1.0, description="condition number L / mu")
    steps_per_epoch: int = Field(50, ge=1)


def _quadratic(options: QuadraticOptions, seed: int, device: torch.device) -> TaskRun:
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


class LandscapeOptions(Options):
    steps_per_epoch: int = Field(100, ge=1)
    noise: float = Field(0.0, ge=0.0, description="standard deviation of the gradient noise")


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


_goldstein_price = _boxed_landscape(landscapes.goldstein_price, 2.0, (0.0, -1.0))
_ackley = _boxed_landscape(landscapes.ackley, 3.0, (0.0, 0.0))


class SharpFlatOptions(LandscapeOptions):
    sharpness: float = Field(8.0, gt=0.0)
    noise: float = Field(0.3, ge=0.0)


def _sharp_flat(options: SharpFlatOptions, seed: int, device: torch.device) -> TaskRun:
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


# --------------------------------------------------------------------------------------------

TASKS: Registry[TaskSpec] = Registry("task")
_CLASSIFICATION = ("val_loss", "val_accuracy")
_FUNCTION = ("value", "distance")
_FASHION_NEEDS = "Debian's dataset-fashion-mnist or MEMTUNE_FASHION_MNIST_DIR"


def _task(name: str, summary: str, options: type[BaseModel], build: Callable, **rest: Any) -> None:
    TASKS.register(TaskSpec(name=name, summary=summary, options=options, build=build, **rest))


_task(
    "quadratic", "ill-conditioned convex quadratic, full batch", QuadraticOptions, _quadratic,
    metric="value", mode="min", metrics=_FUNCTION, smoke={"dim": 20, "steps_per_epoch": 20},
)  # fmt: skip
_task(
    "logreg", "logistic regression on sklearn's breast-cancer data", LogregOptions, _logreg,
    metric="val_loss", mode="min", metrics=_CLASSIFICATION, smoke={"batch_size": 64},
)  # fmt: skip
_task(
    "digits_mlp", "MLP on sklearn's 8x8 digits: the demo task", DigitsOptions, _digits_mlp,
    metric="val_accuracy", mode="max", metrics=_CLASSIFICATION, smoke={"train_size": 512, "width": 32},
)  # fmt: skip
_task(
    "fashion_mlp", "MLP on Fashion-MNIST", FashionOptions, _fashion_mlp,
    metric="val_accuracy", mode="max", metrics=_CLASSIFICATION, needs=_FASHION_NEEDS,
    smoke={"train_size": 1024, "val_size": 512, "width": 64},
)  # fmt: skip
_task(
    "fashion_cnn", "small CNN on Fashion-MNIST", FashionOptions, _fashion_cnn,
    metric="val_accuracy", mode="max", metrics=_CLASSIFICATION, needs=_FASHION_NEEDS,
    smoke={"train_size": 512, "val_size": 256, "width": 4},
)  # fmt: skip
_task(
    "char_lm", "character-level LSTM language model on the stdlib's pydoc text", CharLMOptions, CharLMRun,
    metric="val_perplexity", mode="min", metrics=("val_loss", "val_perplexity"),
    smoke={"train_chars": 8192, "val_chars": 2048, "hidden": 32, "embed": 16},
)  # fmt: skip
_task(
    "goldstein_price", "Goldstein-Price from a random start in [-2, 2]^2", LandscapeOptions, _goldstein_price,
    metric="value", mode="min", metrics=_FUNCTION, smoke={"steps_per_epoch": 20},
)  # fmt: skip
_task(
    "ackley", "2-D Ackley from a random start in [-3, 3]^2", LandscapeOptions, _ackley,
    metric="value", mode="min", metrics=_FUNCTION, smoke={"steps_per_epoch": 20},
)  # fmt: skip
_task(
    "sharp_flat", "1-D sharp well at 0 and flat well at 3; does the optimizer escape?", SharpFlatOptions, _sharp_flat,
    metric="escaped", mode="max", metrics=("value", "escaped"), smoke={"steps_per_epoch": 20},
)  # fmt: skip


def get_task(name: str) -> TaskSpec:
    """The task registered under ``name``; the error lists the known tasks."""
    return TASKS.get(name)
