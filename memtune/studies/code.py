"""A task from the user's own code: ``task: ./my_task.py:build`` or ``task: my_module:build``.

A reference names a builder with the plugin signature ``build(options, seed, device) ->
TaskRun``; ``options`` is the spec's ``task_options`` as a plain mapping. What travels is
never the function itself (nothing is unpickled): the files are read once, when the study is
submitted, into a :class:`TaskCode` (a zip in memory, stored with the study), and every trial
process imports the builder again from its copy of those files, by path.

Where the copy lies: the runner extracts the archive into a directory named after its digest
(``memtune_code_<digest>``); on a Ray cluster that directory travels to the workers in Ray's
runtime environment (``py_modules``), where the trial finds it on ``sys.path``. Torch-free:
the spec, the API and the client read and check references without importing user code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import io
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CODE_LIMIT_BYTES",
    "CodeError",
    "TaskCode",
    "code_cache",
    "code_root",
    "is_code_reference",
    "load_builder",
    "split_reference",
]

# What a study may ship: its task file, or the directory its spec names. Ray's own limit on a
# runtime-environment package is far larger; a study's code is a few files, and a larger
# directory is a sign that the wrong one was named (a data set, a virtual environment).
CODE_LIMIT_BYTES = 10 * 2**20
# Never shipped from a named directory: caches and version control.
_SKIPPED = {"__pycache__", ".git", ".hg", ".venv", "venv", ".mypy_cache", ".pytest_cache"}
_IDENTIFIER = r"[A-Za-z_]\w*"
_MODULE = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*$")
# A file reference: a path ending in .py, then the function (a top-level name).
REFERENCE_PATTERN = rf"^(?:[^:]+\.py|{_IDENTIFIER}(?:\.{_IDENTIFIER})*):{_IDENTIFIER}$"
PACKAGE_PREFIX = "memtune_code_"


class CodeError(ValueError):
    """A code reference or its files that cannot be used; ``field`` names the spec's field."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[type[CodeError], tuple[str, str]]:
        # Raised in a trial: Ray copies and pickles it to the driver.
        return type(self), (self.field, self.message)


def is_code_reference(task: str) -> bool:
    """Whether a spec's ``task`` names code (``file.py:function``, ``module:function``)
    rather than a registered task (whose names hold no colon)."""
    return ":" in task


def split_reference(task: str) -> tuple[str, str]:
    """``"dir/my_task.py:build"`` -> ``("dir/my_task.py", "build")``; raises CodeError."""
    if not re.match(REFERENCE_PATTERN, task):
        raise CodeError(
            "task",
            f"{task!r} is neither a registered task nor a reference to a builder: write "
            "path/to/file.py:function or module:function",
        )
    target, _, function = task.rpartition(":")
    return target, function


@dataclass(frozen=True)
class TaskCode:
    """The files of a code task, as a zip archive in memory, and the builder's reference
    relative to the archive's root (``my_task.py:build``)."""

    archive: bytes = field(repr=False)
    reference: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.archive + self.reference.encode()).hexdigest()[:16]

    @property
    def package(self) -> str:
        """The directory the files are extracted into, a module name on ``sys.path``."""
        return PACKAGE_PREFIX + self.digest

    @classmethod
    def received(cls, archive: bytes, reference: str) -> TaskCode:
        """Files that came over the network (the API): checked as data, never imported. A
        zip that is not one, holds paths outside its root, unpacks beyond the limit, or lacks
        the file the reference names is refused (CodeError naming ``code``)."""
        target, _ = split_reference(reference)
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as opened:
                entries = opened.infolist()
        except zipfile.BadZipFile:
            raise CodeError("code", "not a zip archive") from None
        for entry in entries:
            path = Path(entry.filename)
            if path.is_absolute() or ".." in path.parts:
                raise CodeError("code", f"{entry.filename}: a path outside the archive's root")
        unpacked = sum(entry.file_size for entry in entries)
        if unpacked > CODE_LIMIT_BYTES:
            raise CodeError(
                "code",
                f"unpacks to {unpacked / 2**20:.1f} MiB; a study ships at most "
                f"{CODE_LIMIT_BYTES // 2**20} MiB of code",
            )
        if target.endswith(".py") and target not in {e.filename for e in entries}:
            raise CodeError("code", f"holds no {target}, which task names")
        return cls(archive, reference)

    def names(self) -> list[str]:
        with zipfile.ZipFile(io.BytesIO(self.archive)) as archive:
            return archive.namelist()

    @classmethod
    def read(cls, task: str, base: Path, *, directory: str | None = None) -> TaskCode | None:
        """The code a spec's ``task`` names, read from disk, relative paths from ``base`` (the
        spec's directory); ``directory``: ship that whole directory (the spec's ``task_dir``)
        instead of the file alone. None for ``module:function`` of a module that is not under
        ``base`` or ``directory``: an installed module, imported by name on every node."""
        target, function = split_reference(task)
        root = _shipped_directory(base, directory) if directory else None
        if target.endswith(".py"):
            path = (base / target).resolve()
            if not path.is_file():
                raise CodeError("task", f"no file {target} (looked for {path})")
            shipped = path  # the file alone, unless a directory is named
        else:
            found = _module_file(target, root or base)
            if found is None:
                return None
            path, shipped = found  # a module's file, or its whole top-level package
            if root is None:
                root = base.resolve()
        if root is None:
            root = path.parent
        elif not path.is_relative_to(root):
            raise CodeError("task_dir", f"{path} lies outside the directory {root}")
        files = _files_under(root if directory else shipped)
        size = sum(p.stat().st_size for p in files)
        if size > CODE_LIMIT_BYTES:
            raise CodeError(
                "task_dir" if directory else "task",
                f"{root} holds {size / 2**20:.1f} MiB of files; a study ships at most "
                f"{CODE_LIMIT_BYTES // 2**20} MiB of code (name a smaller task_dir)",
            )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                # A fixed date: the same files give the same archive, so the same digest.
                info = zipfile.ZipInfo(str(file.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(info, file.read_bytes(), zipfile.ZIP_DEFLATED)
        relative = path.relative_to(root)
        entry = str(relative) if target.endswith(".py") else target
        return cls(buffer.getvalue(), f"{entry}:{function}")

    @classmethod
    def for_function(
        cls, function: Callable[..., Any], *, directory: Path | None = None
    ) -> tuple[str, TaskCode | None]:
        """The task reference and code of a builder given as a Python function
        (``memtune.run(spec, task=f)``): a function of an installed package is imported by
        name on every node; one of a script or a module file of the user's is shipped as that
        file (or ``directory``) and imported again by path in every trial."""
        name = getattr(function, "__qualname__", "")
        module_name = getattr(function, "__module__", "") or ""
        if not callable(function) or not re.fullmatch(_IDENTIFIER, name):
            raise CodeError(
                "task", f"{function!r} is not a function defined at a module's top level"
            )
        try:  # where the function's own code was written (a notebook cell has no file)
            source = inspect.getsourcefile(function)
        except TypeError:
            source = None
        if source is None or not source.endswith(".py") or not Path(source).is_file():
            raise CodeError(
                "task",
                f"{name} is defined in {module_name}, which has no .py file (a notebook cell, "
                "say); trials import the builder from a file: put it in my_task.py (%%writefile "
                "in Jupyter) and pass that module's function",
            )
        if module_name != "__main__" and "site-packages" in Path(source).parts:
            return f"{module_name}:{name}", None
        if module_name == "__main__" and not _guards_main(Path(source).read_text()):
            # Every trial imports the file again: an unguarded memtune.run() would start a
            # study inside each trial.
            raise CodeError(
                "task",
                f"{name} is defined in the script that runs the study, which every trial "
                "imports again: put the script's own work under if __name__ == '__main__': "
                "or move the builder to a module of its own",
            )
        path = Path(source).resolve()
        code = cls.read(
            f"{path.name}:{name}", path.parent, directory=str(directory) if directory else None
        )
        assert code is not None  # a file reference always has code
        return code.reference, code

    def extract(self, parent: Path) -> Path:
        """Writes the files under ``parent/memtune_code_<digest>`` unless they are there;
        returns that directory."""
        parent.mkdir(parents=True, exist_ok=True)
        root = parent / self.package
        if root.is_dir():  # content-addressed: the same digest holds the same files
            return root
        staging = Path(tempfile.mkdtemp(prefix=f".{self.package}-", dir=parent))
        with zipfile.ZipFile(io.BytesIO(self.archive)) as archive:
            archive.extractall(staging)
        try:  # atomic: a trial never sees half the files
            staging.rename(root)
        except OSError:  # another process extracted it first
            shutil.rmtree(staging, ignore_errors=True)
        return root


def _shipped_directory(base: Path, directory: str) -> Path:
    root = (base / directory).resolve()
    if not root.is_dir():
        raise CodeError("task_dir", f"no directory {directory} (looked for {root})")
    home = Path.home().resolve()
    if root == home or home.is_relative_to(root):
        # A home directory holds credentials and keys: never ship it to a cluster.
        raise CodeError("task_dir", f"{root} is (or holds) a home directory; name the task's own")
    return root


def _module_file(module: str, root: Path) -> tuple[Path, Path] | None:
    """Where ``module`` lies under ``root`` (found without importing it): its file, and what
    ships with it (the file of a top-level module, the whole top-level package of one inside
    a package, whose imports need their package). None: not under ``root``."""
    first, *rest = module.split(".")
    single, package = root / f"{first}.py", root / first
    if not rest and single.is_file():
        return single.resolve(), single.resolve()
    if not (package / "__init__.py").is_file() and not (rest and package.is_dir()):
        return None
    path = package.joinpath(*rest[:-1], f"{rest[-1]}.py") if rest else package / "__init__.py"
    if not path.is_file():
        path = package.joinpath(*rest, "__init__.py")
    if not path.is_file():
        raise CodeError("task", f"{module} is not a module of {package}")
    return path.resolve(), package.resolve()


def _files_under(path: Path) -> list[Path]:
    """A file, or every file below a directory but caches, version control, virtual
    environments and dotenv files (which hold secrets)."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not _SKIPPED & set(p.relative_to(path).parts)
        and not p.name.startswith(".env")
    )


def code_cache() -> Path:
    """Where runners extract a study's files on their machine (content-addressed, so a study
    resumed later, or a second study of the same code, finds them as they were)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("memtune")) / "code"


def code_root(package: str) -> Path:
    """Where a trial finds its study's files: on ``sys.path`` when Ray's runtime environment
    brought them (``py_modules``), else the runner's copy on this machine."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    local = code_cache() / package
    if not local.is_dir():
        raise CodeError(
            "task",
            f"the study's files ({package}) are not on this node: on a cluster they travel with "
            "the runtime environment of a driver that connects with RAY_ADDRESS",
        )
    return local


def load_builder(reference: str, root: Path | None) -> Callable[..., Any]:
    """The builder a reference names, imported now: a file by its path under ``root`` (the
    study's files, which also go on ``sys.path`` for their own imports), a module by name."""
    target, function = split_reference(reference)
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if target.endswith(".py"):
        if root is None:
            raise CodeError("task", f"{target}: the study's files were not found on this node")
        path = root / target
        if str(path.parent) not in sys.path:  # a file in a subfolder imports its siblings
            sys.path.insert(0, str(path.parent))
        # One module per study's files (their digest names root): a reused trial actor that
        # served another study's my_task.py imports this one afresh.
        stem = re.sub(r"\W", "_", target.removesuffix(".py"))
        name = f"_{root.name}_{stem}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise CodeError("task", f"cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as error:
                del sys.modules[name]
                raise CodeError("task", f"importing {target} raised {_described(error)}") from error
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:
            raise CodeError("task", f"importing {target} raised {_described(error)}") from error
    builder = getattr(module, function, None)
    if not callable(builder):
        raise CodeError("task", f"{target} defines no function {function!r}")
    return builder


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _guards_main(source: str) -> bool:
    """Whether a script runs its top-level work under ``if __name__ == "__main__":``."""
    for node in ast.parse(source).body:
        test = node.test if isinstance(node, ast.If) else None
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
        ):
            return True
    return False
