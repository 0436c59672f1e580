"""The task registry: a model, its data and its metrics, all offline, described without torch.

A task's entry names its options (a pydantic model), the metrics its runs report with the
direction of each, its default metric, its smoke size, and where its builder lives
(``memtune.studies.runs``, imported only when a trial is built). The study spec and the API
read the registry without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from memtune.registry import Registry, resolve
from memtune.studies.task_options import (
    SPLIT_SEED,
    CharLMOptions,
    DigitsOptions,
    FashionOptions,
    LandscapeOptions,
    LogregOptions,
    Options,  # re-exported: a plugin's task options subclass it
    QuadraticOptions,
    SharpFlatOptions,
)

if TYPE_CHECKING:
    import torch

    from memtune.studies.runs import TaskRun

__all__ = ["TASKS", "TRAIN_LOSS", "Direction", "Options", "TaskSpec", "code_task", "get_task"]

Direction = Literal["min", "max"]
# Every run reports its mean training loss per epoch besides the task's own metrics.
TRAIN_LOSS = "train_loss"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    options: type[BaseModel] | None  # None: a task from code, given its options as a mapping
    builder: str  # "module:function" building a TaskRun from (options, seed, device)
    metric: str  # the default metric of a study
    metrics: Mapping[str, Direction]  # everything evaluate("val") returns, and which way
    data: str  # where the data comes from and how it is split (memtune list tasks shows it)
    smoke: Mapping[str, Any] = field(default_factory=dict)
    binary: frozenset[str] = frozenset()  # metrics that are 0 or 1 per run (escaped or not)
    origin: str = "memtune"  # the distribution that registered it (set by the registry)

    @property
    def mode(self) -> Direction:
        return self.metrics[self.metric]

    @property
    def reported(self) -> tuple[str, ...]:
        """Every metric a study of this task may name: the task's and the training loss."""
        return (*self.metrics, TRAIN_LOSS)

    @property
    def evaluated(self) -> tuple[str, ...]:
        """Every metric a run may report: validation, and the test twins of seed re-runs."""
        twins = (t for m in self.metrics if (t := self.test_metric(m)))
        return (*self.metrics, *twins)

    @property
    def held_out(self) -> bool:
        """True when the task has a test split besides its validation split."""
        return any(m.startswith("val_") for m in self.metrics)

    def test_metric(self, metric: str) -> str | None:
        """The test-split twin of a validation metric (``val_accuracy`` -> ``test_accuracy``);
        None for a task without held-out data or a metric that is not a validation one."""
        return "test_" + metric.removeprefix("val_") if metric.startswith("val_") else None

    def direction(self, metric: str) -> Direction:
        """Whether ``metric`` is better low or high, as this entry declares it (a test metric
        goes the way of its validation twin)."""
        if metric == TRAIN_LOSS:
            return "min"
        if metric.startswith("test_"):
            metric = "val_" + metric.removeprefix("test_")
        return self.metrics[metric]

    def parse_options(
        self, options: Mapping[str, Any] | None = None, *, smoke: bool = False
    ) -> BaseModel | dict[str, Any]:
        if self.options is None:  # a task from code reads its options itself
            return dict(options or {})
        return self.options(**{**(self.smoke if smoke else {}), **(options or {})})

    def create(
        self,
        options: Mapping[str, Any] | None,
        seed: int,
        device: str | torch.device = "cpu",
        *,
        smoke: bool = False,
    ) -> TaskRun:
        import torch

        build = resolve(self.builder)
        return build(self.parse_options(options, smoke=smoke), seed, torch.device(device))


# --------------------------------------------------------------------------------------------

_CLASSIFICATION: Mapping[str, Direction] = {"val_loss": "min", "val_accuracy": "max"}
_FUNCTION: Mapping[str, Direction] = {"value": "min", "distance": "min"}
_RUNS = "memtune.studies.runs"
_NO_DATA = "no data: a function of the parameters, so no held-out split (reports the objective)"
_FASHION = (
    f"60,000 training images: train 50,000 / val 10,000 (split seed {SPLIT_SEED}); "
    "the official 10,000 t10k images are the test split"
)


def _task(name: str, summary: str, options: type[BaseModel], **rest: Any) -> TaskSpec:
    builder = rest.pop("builder", name)
    return TaskSpec(
        name=name, summary=summary, options=options, builder=f"{_RUNS}:{builder}", **rest
    )


def builtin_tasks() -> list[TaskSpec]:
    """memtune's own tasks: the ``builtin`` entry point of ``memtune.tasks``."""
    return [
        _task(
            "quadratic",
            "ill-conditioned convex quadratic, full batch",
            QuadraticOptions,
            metric="value",
            metrics=_FUNCTION,
            smoke={"dim": 20, "steps_per_epoch": 20},
            data=_NO_DATA,
        ),
        _task(
            "logreg",
            "logistic regression on sklearn's breast-cancer data",
            LogregOptions,
            metric="val_loss",
            metrics=_CLASSIFICATION,
            smoke={"batch_size": 64},
            data=f"569 samples: train 60% / val 20% / test 20% (split seed {SPLIT_SEED})",
        ),
        _task(
            "digits_mlp",
            "MLP on sklearn's 8x8 digits: the demo task",
            DigitsOptions,
            metric="val_accuracy",
            metrics=_CLASSIFICATION,
            smoke={"train_size": 512, "width": 32},
            data=f"1,797 images: train 60% / val 20% / test 20% (split seed {SPLIT_SEED})",
        ),
        _task(
            "fashion_mlp",
            "MLP on Fashion-MNIST",
            FashionOptions,
            metric="val_accuracy",
            metrics=_CLASSIFICATION,
            smoke={"train_size": 1024, "val_size": 512, "test_size": 512, "width": 64},
            data=_FASHION,
        ),
        _task(
            "fashion_cnn",
            "small CNN on Fashion-MNIST",
            FashionOptions,
            metric="val_accuracy",
            metrics=_CLASSIFICATION,
            smoke={"train_size": 512, "val_size": 256, "test_size": 256, "width": 4},
            data=_FASHION,
        ),
        _task(
            "char_lm",
            "character-level LSTM language model on the stdlib's pydoc text",
            CharLMOptions,
            builder="CharLMRun",
            metric="val_perplexity",
            metrics={"val_loss": "min", "val_perplexity": "min"},
            smoke={"train_chars": 8192, "val_chars": 2048, "hidden": 32, "embed": 16},
            data="~465k characters in blocks of 128; the split seed picks one validation and one "
            "test block in each of val_chars / 128 equal runs of blocks (held-out text spread over "
            "the whole text like the training blocks), the rest train, in text order",
        ),
        _task(
            "goldstein_price",
            "Goldstein-Price from a random start in [-2, 2]^2",
            LandscapeOptions,
            metric="value",
            metrics=_FUNCTION,
            smoke={"steps_per_epoch": 20},
            data=_NO_DATA,
        ),
        _task(
            "ackley",
            "2-D Ackley from a random start in [-3, 3]^2",
            LandscapeOptions,
            metric="value",
            metrics=_FUNCTION,
            smoke={"steps_per_epoch": 20},
            data=_NO_DATA,
        ),
        _task(
            "sharp_flat",
            "1-D sharp well at 0 and flat well at 3; does the optimizer escape?",
            SharpFlatOptions,
            metric="escaped",
            metrics={"value": "min", "escaped": "max"},
            smoke={"steps_per_epoch": 20},
            binary=frozenset({"escaped"}),
            data=_NO_DATA,
        ),
    ]


TASKS: Registry[TaskSpec] = Registry("task", group="memtune.tasks", builtin=builtin_tasks)


def code_task(reference: str, metrics: Mapping[str, Direction], metric: str | None) -> TaskSpec:
    """The entry of a task from the user's code (``memtune.studies.code``): its metrics and
    their directions come from the spec, its options go to the builder as they are."""
    return TaskSpec(
        name=reference,
        summary="a task from your code",
        options=None,
        builder=reference,
        metric=metric or next(iter(metrics)),
        metrics=dict(metrics),
        data="your builder's own split",
        origin="code",
    )


def get_task(name: str) -> TaskSpec:
    """The task registered under ``name``; the error lists the known tasks."""
    return TASKS.get(name)
