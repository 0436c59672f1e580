"""Reading a study spec: from a mapping (``parse_spec``, its first error located by
``locate`` as a field path and a reason), from a YAML or JSON file (YAML numbers read as YAML
1.2 reads them), and the files of a task from code, read from disk and attached to the spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from memtune.studies.code import CodeError, TaskCode
from memtune.studies.spec._base import SpecError
from memtune.studies.spec.study import StudySpec

__all__ = ["attach_code", "load_spec", "locate", "parse_spec", "read_spec_file", "read_task_code"]


def _format_errors(error: ValidationError) -> str:
    return "\n".join(
        f"  {'.'.join(map(str, e['loc'])) or '(spec)'}: {e['msg']}" for e in error.errors()
    )


def locate(error: Mapping[str, Any]) -> tuple[list[str], str]:
    """Where one of pydantic's errors of a spec points, and why: whole-model checks prefix
    their message with the field they blame ("fixed.lr: ..."), which moves into the path."""
    location = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    blamed = re.match(r"^([A-Za-z_][\w.]*): (.*)$", message, flags=re.DOTALL)
    if error["type"] == "value_error" and blamed:
        location += blamed[1].split(".")
        message = blamed[2]
    return location, message


def parse_spec(data: Mapping[str, Any]) -> StudySpec:
    """A StudySpec from a dict; raises SpecError naming the first bad field."""
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        location, message = locate(error.errors()[0])
        raise SpecError(".".join(location) or "spec", message) from None


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but numbers as YAML 1.2 reads them: ``1e-5`` is a float (YAML 1.1,
    PyYAML's, wants ``1.0e-5`` and reads ``1e-5`` as a string, which the spec refuses)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML or JSON spec file holds, unvalidated. Raises SpecError naming
    ``spec`` with the line and column for a file that is not YAML or JSON (or not a mapping),
    FileNotFoundError for one that is not there."""
    path = Path(path)
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_YamlLoader)
    except json.JSONDecodeError as error:
        raise SpecError(
            "spec", f"not JSON: line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SpecError("spec", f"not YAML: {where}{problem}") from None
    if not isinstance(data, dict):
        raise SpecError("spec", f"{path} must hold a mapping, not {type(data).__name__}")
    return data


def load_spec(path: str | Path) -> StudySpec:
    """A StudySpec from a YAML or JSON file; a task from code is read from disk now (relative
    paths from the spec's directory) and travels with the spec (``spec.task_code``).

    Raises SpecError naming the field, FileNotFoundError for a spec that is not there."""
    spec = parse_spec(read_spec_file(path))
    return attach_code(spec, Path(path).resolve().parent)


def read_task_code(task: str, base: Path, directory: str | None = None) -> TaskCode | None:
    """The files a spec's ``task`` names (TaskCode.read), its errors as SpecError."""
    try:
        return TaskCode.read(task, base, directory=directory)
    except CodeError as error:
        raise SpecError(error.field, error.message) from None


def attach_code(spec: StudySpec, base: Path) -> StudySpec:
    """``spec`` with the files of its task from code read from disk, relative to ``base``."""
    if not spec.from_code or spec.task_code is not None:
        return spec
    return spec.with_code(read_task_code(spec.task, base, spec.task_dir))
