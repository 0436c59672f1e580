"""What a study is: a validated spec, loadable from YAML or JSON.

A study compares arms (optimizers) on one task. Each arm runs K independent searches of the
same budget (``budget.searches`` of ``budget.trials_per_search`` trials, each search with its
own seeds); the best config of every search is re-run on fresh seeds (the same for the r-th
search of every arm, never a seed a search trained with), and only those re-runs feed the
verdict, one score per search.
Validation errors name the field (pydantic's ``loc``) and the reason, and list the known
names when an optimizer or a task is unknown.

- ``arms``: an arm, its range overrides, and the learning-rate schedule;
- ``budget``: the budget (and its defaults), a trial's resources, tracking;
- ``study``: the whole spec and each arm's searches with their seeds;
- ``loading``: a spec from a mapping or a file, and a task's code attached;
- ``_base``: ``SpecError`` and the models' base.
"""

from __future__ import annotations

from memtune.optimizers import UnknownNameError
from memtune.studies.spec._base import SpecError
from memtune.studies.spec.arms import (
    BETA1,
    SCHEDULE_PARAMS,
    WARMUP,
    ArmSpec,
    RangeOverride,
    Schedule,
)
from memtune.studies.spec.budget import (
    DEFAULT_SEARCHES,
    DEFAULT_SEEDS,
    DEFAULT_TRIALS_PER_SEARCH,
    Budget,
    Resources,
    Tracking,
)
from memtune.studies.spec.loading import (
    attach_code,
    load_spec,
    locate,
    parse_spec,
    read_spec_file,
    read_task_code,
)
from memtune.studies.spec.study import (
    RERUN_STRIDE,
    SEARCH_SEED_FLOOR,
    SPEC_SCHEMA_VERSION,
    Search,
    StudySpec,
)

__all__ = [
    "BETA1",
    "DEFAULT_SEARCHES",
    "DEFAULT_SEEDS",
    "DEFAULT_TRIALS_PER_SEARCH",
    "RERUN_STRIDE",
    "SCHEDULE_PARAMS",
    "SEARCH_SEED_FLOOR",
    "SPEC_SCHEMA_VERSION",
    "WARMUP",
    "ArmSpec",
    "Budget",
    "RangeOverride",
    "Resources",
    "Schedule",
    "Search",
    "SpecError",
    "StudySpec",
    "Tracking",
    "UnknownNameError",
    "attach_code",
    "load_spec",
    "locate",
    "parse_spec",
    "read_spec_file",
    "read_task_code",
]
