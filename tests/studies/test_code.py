"""A task from the user's code: references, the files read and shipped, the spec's checks.
No Ray and no trial here (tests/tuning/test_code_task.py runs studies)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from memtune.studies import code as code_module
from memtune.studies.code import CodeError, TaskCode, load_builder, split_reference
from memtune.studies.spec import SpecError, load_spec, parse_spec

ARMS = [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}]
METRICS = {"val_loss": "min", "val_accuracy": "max"}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _spec_file(directory: Path, **fields) -> Path:
    import yaml

    body = {"task": "./task.py:build", "metrics": METRICS, "arms": ARMS, **fields}
    return _write(directory / "study.yaml", yaml.safe_dump(body))


def test_a_reference_is_a_file_or_a_module_then_a_function():
    assert split_reference("dir/my_task.py:build") == ("dir/my_task.py", "build")
    assert split_reference("pkg.tasks:build") == ("pkg.tasks", "build")
    for bad in ("my_task.py:", "my task:build", "pkg.tasks:build.inner", ":build"):
        with pytest.raises(CodeError, match=r"path/to/file\.py:function"):
            split_reference(bad)


def test_a_code_task_declares_its_metrics_and_a_registered_one_does_not():
    with pytest.raises(SpecError) as missing:
        parse_spec({"task": "my_task.py:build", "arms": ARMS})
    assert missing.value.field == "metrics" and "val_loss: min" in missing.value.message
    with pytest.raises(SpecError) as registered:
        parse_spec({"task": "digits_mlp", "arms": ARMS, "metrics": METRICS})
    assert registered.value.field == "metrics"
    with pytest.raises(SpecError) as shipped:
        parse_spec({"task": "digits_mlp", "arms": ARMS, "task_dir": "."})
    assert shipped.value.field == "task_dir"
    with pytest.raises(SpecError) as test_metric:
        parse_spec({"task": "t.py:build", "arms": ARMS, "metrics": {"test_loss": "min"}})
    assert test_metric.value.field == "metrics"
    with pytest.raises(SpecError) as unknown:
        parse_spec({"task": "t.py:build", "arms": ARMS, "metrics": METRICS, "metric": "acc"})
    assert unknown.value.field == "metric"


def test_a_code_task_selects_on_its_first_metric_and_reports_the_test_twin():
    spec = parse_spec({"task": "t.py:build", "arms": ARMS, "metrics": {"val_accuracy": "max"}})
    assert spec.resolved_metric == "val_accuracy" and spec.resolved_mode == "max"
    assert spec.headline_metric == "test_accuracy"
    plain = parse_spec({"task": "t.py:build", "arms": ARMS, "metrics": {"loss": "min"}})
    assert plain.headline_metric == "loss" and not plain.task_spec.held_out
    # Options are the builder's business: any mapping passes the spec.
    assert parse_spec(
        {"task": "t.py:build", "arms": ARMS, "metrics": METRICS, "task_options": {"x": [1]}}
    ).task_spec.parse_options({"x": [1]}) == {"x": [1]}


def test_load_spec_reads_the_task_file_from_the_specs_directory(tmp_path):
    _write(tmp_path / "task.py", "def build(options, seed, device):\n    return None\n")
    spec = load_spec(_spec_file(tmp_path))
    assert spec.task == "task.py:build" and spec.task_code.names() == ["task.py"]
    assert spec.task_code.package.startswith("memtune_code_")
    # The JSON of the spec never carries the files; a copy of the spec keeps them.
    assert "code" not in spec.model_dump() and spec.model_copy().task_code == spec.task_code


def test_the_same_files_have_the_same_digest_and_other_files_another(tmp_path):
    _write(tmp_path / "task.py", "def build(options, seed, device):\n    return 1\n")
    first = load_spec(_spec_file(tmp_path)).task_code
    assert load_spec(_spec_file(tmp_path)).task_code.digest == first.digest
    _write(tmp_path / "task.py", "def build(options, seed, device):\n    return 2\n")
    assert load_spec(_spec_file(tmp_path)).task_code.digest != first.digest


def test_a_missing_file_or_directory_is_named(tmp_path):
    with pytest.raises(SpecError) as missing:
        load_spec(_spec_file(tmp_path))
    assert missing.value.field == "task" and "no file ./task.py" in missing.value.message
    _write(tmp_path / "task.py", "def build(o, s, d): ...\n")
    with pytest.raises(SpecError) as directory:
        load_spec(_spec_file(tmp_path, task_dir="src"))
    assert directory.value.field == "task_dir"


def test_a_task_dir_ships_the_directory_without_caches_and_never_a_home(tmp_path, monkeypatch):
    _write(tmp_path / "src" / "task.py", "from helper import WIDTH\ndef build(o, s, d): ...\n")
    _write(tmp_path / "src" / "helper.py", "WIDTH = 3\n")
    _write(tmp_path / "src" / "__pycache__" / "helper.cpython-311.pyc", "x")
    study = _spec_file(tmp_path, task="./src/task.py:build", task_dir="src")
    spec = load_spec(study)
    assert sorted(spec.task_code.names()) == ["helper.py", "task.py"]
    monkeypatch.setenv("HOME", str(tmp_path / "src"))
    with pytest.raises(SpecError) as home:
        load_spec(study)
    assert home.value.field == "task_dir" and "home directory" in home.value.message
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(code_module, "CODE_LIMIT_BYTES", 10)
    with pytest.raises(SpecError) as large:
        load_spec(study)
    assert large.value.field == "task_dir" and "at most" in large.value.message


def test_a_module_in_a_package_ships_its_package_and_a_dotenv_never_ships(tmp_path):
    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "tasks.py", "from pkg.helper import W\ndef build(o, s, d): ...\n")
    _write(tmp_path / "pkg" / "helper.py", "W = 1\n")
    _write(tmp_path / "pkg" / ".env", "TOKEN=secret\n")
    spec = load_spec(_spec_file(tmp_path, task="pkg.tasks:build"))
    assert spec.task == "pkg.tasks:build"
    assert sorted(spec.task_code.names()) == ["pkg/__init__.py", "pkg/helper.py", "pkg/tasks.py"]
    root = spec.task_code.extract(tmp_path / "x")
    assert load_builder(spec.task, root).__module__ == "pkg.tasks"


def test_a_builder_in_an_unguarded_script_is_refused_a_guarded_one_ships(tmp_path):
    def builder_of(source: str):
        path = _write(tmp_path / "script.py", source)
        namespace: dict = {"__name__": "__main__"}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        return namespace["build"]

    body = "def build(options, seed, device):\n    return None\n"
    with pytest.raises(CodeError) as unguarded:
        TaskCode.for_function(builder_of(body + "STUDY = build({}, 0, 'cpu')  # memtune.run\n"))
    assert "if __name__ == '__main__'" in unguarded.value.message
    guarded = body + "if __name__ == '__main__':\n    STUDY = build({}, 0, 'cpu')\n"
    reference, code = TaskCode.for_function(builder_of(guarded))
    assert reference == "script.py:build" and code.names() == ["script.py"]


def test_a_module_reference_ships_a_module_beside_the_spec_and_not_an_installed_one(tmp_path):
    _write(tmp_path / "mine.py", "def build(o, s, d): ...\n")
    spec = load_spec(_spec_file(tmp_path, task="mine:build"))
    assert spec.task == "mine:build" and spec.task_code.names() == ["mine.py"]
    installed = load_spec(_spec_file(tmp_path, task="memtune.studies.runs:TaskRun"))
    assert installed.task_code is None  # imported by name where the trial runs


def test_the_builder_is_imported_again_by_path_once_per_digest(tmp_path):
    _write(
        tmp_path / "a" / "task.py",
        "from helper import VALUE\ndef build(o, s, d):\n    return VALUE\n",
    )
    _write(tmp_path / "a" / "helper.py", "VALUE = 'a'\n")
    _write(tmp_path / "b" / "task.py", "def build(o, s, d):\n    return 'b'\n")
    a = TaskCode.read("task.py:build", tmp_path / "a", directory=".")
    b = TaskCode.read("task.py:build", tmp_path / "b")
    root_a, root_b = a.extract(tmp_path / "x"), b.extract(tmp_path / "x")
    assert root_a.name == a.package and (root_a / "helper.py").is_file()
    assert load_builder(a.reference, root_a)(None, 0, None) == "a"
    assert load_builder(b.reference, root_b)(None, 0, None) == "b"  # not a's module again
    assert a.extract(tmp_path / "x") == root_a  # extracted once
    with pytest.raises(CodeError, match="no function 'missing'"):
        load_builder("task.py:missing", root_b)


def test_a_function_from_a_notebook_cell_is_refused_with_the_way_out():
    namespace: dict = {"__name__": "__main__"}
    exec("def build(options, seed, device):\n    return None\n", namespace)
    with pytest.raises(CodeError) as error:
        TaskCode.for_function(namespace["build"])
    assert "put it in my_task.py" in error.value.message
    with pytest.raises(CodeError, match="top level"):
        TaskCode.for_function(lambda o, s, d: None)
