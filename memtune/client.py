"""A small Python client of memtune's API: submit a spec, follow it, read its verdict and
trials, export. The CLI's remote commands (``memtune submit``, ``status``, ``verdict``,
``replay``) use it, so nobody needs curl.

    from memtune.client import Client

    client = Client("http://127.0.0.1:8000", key="mt_...")   # or MEMTUNE_URL, MEMTUNE_API_KEY
    study = client.submit("memtune/examples/demo.yaml")
    client.wait(study["id"])                                  # with a progress bar
    print(client.verdict(study["id"]).comparisons)

Imports neither torch nor Ray.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from memtune.studies.code import TaskCode, is_code_reference
from memtune.studies.records import StudyStatus
from memtune.studies.spec import StudySpec, read_spec_file, read_task_code
from memtune.studies.verdict import Verdict

__all__ = ["Client", "MemtuneError"]

DEFAULT_URL = "http://127.0.0.1:8000"


class MemtuneError(RuntimeError):
    """An answer other than success: its status and the API's error details."""

    def __init__(self, status: int, detail: list[dict[str, Any]]) -> None:
        self.status, self.detail = status, detail
        where = ".".join(str(p) for p in (detail[0].get("loc") or [])) if detail else ""
        message = detail[0].get("msg", "") if detail else ""
        super().__init__(f"{status}: {where + ': ' if where else ''}{message}")


class Client:
    def __init__(
        self, url: str | None = None, key: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.url = (url or os.environ.get("MEMTUNE_URL") or DEFAULT_URL).rstrip("/")
        key = key or os.environ.get("MEMTUNE_API_KEY")
        self._http = httpx.Client(
            base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json()["detail"]
                if not isinstance(detail, list):
                    raise ValueError("not memtune's error shape")
            except (ValueError, KeyError, TypeError, AttributeError):
                # Not memtune's one error shape: another server answered at this URL.
                reason = f"{response.status_code} {response.reason_phrase}".strip()
                message = f"answered {reason} to {method} {path}, not as memtune's API does (check the URL)"
                detail = [{"loc": [], "msg": message}]
            raise MemtuneError(response.status_code, detail)
        return response

    # -- studies -------------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any] | StudySpec | str | Path) -> dict[str, Any]:
        """Queues a study from a dict, a StudySpec, or a YAML / JSON file's path. A task from
        code (``task: ./my_task.py:build``) goes with its files, read here (relative paths
        from the spec's directory, or the current one); it needs a key with the code scope.
        Raises MemtuneError (the API's answer), SpecError (a spec file that is not YAML or
        JSON, or a task file that is not there)."""
        code: TaskCode | None = None
        if isinstance(spec, StudySpec):
            body = spec.model_dump(mode="json", exclude_none=True)
            code = spec.task_code
            base = Path.cwd()
        elif isinstance(spec, str | Path):
            body, base = read_spec_file(spec), Path(spec).resolve().parent
        else:
            body, base = dict(spec), Path.cwd()
        task = body.get("task")
        if code is None and isinstance(task, str) and is_code_reference(task):
            code = read_task_code(task, base, body.get("task_dir"))
        if code is not None:
            body["task"] = code.reference
            body["code"] = base64.b64encode(code.archive).decode()
        return self._call("POST", "/studies", json=body).json()

    def study(self, study_id: int) -> dict[str, Any]:
        return self._call("GET", f"/studies/{study_id}").json()

    def studies(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every study of yours matching ``filters`` (status, task, optimizer), page by page."""
        offset = 0
        while True:
            page = self._call(
                "GET", "/studies", params={**filters, "offset": offset, "limit": 100}
            ).json()
            yield from page["data"]
            offset += len(page["data"])
            if not page["data"] or offset >= page["count"]:
                return

    def wait(
        self,
        study_id: int,
        *,
        progress: bool = True,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Polls until the study ended; a progress bar (trials, best per arm) on stderr."""
        from tqdm import tqdm

        study = self.study(study_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with tqdm(
            total=study["trials_total"],
            unit="trial",
            desc=study["name"],
            disable=not progress,
            mininterval=1.0,
        ) as bar:
            while not StudyStatus(study["status"]).ended:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"study {study_id} is still {study['status']}")
                time.sleep(poll_s)
                study = self.study(study_id)
                best = ", ".join(
                    f"{a['arm']} {a['best']:.4g}"
                    for a in study["progress"]
                    if isinstance(a["best"], int | float)
                )
                bar.total = study["trials_total"]
                bar.set_postfix_str(best, refresh=False)
                bar.update(study["trials_done"] - bar.n)
        return study

    def cancel(self, study_id: int) -> dict[str, Any]:
        return self._call("POST", f"/studies/{study_id}/cancel").json()

    def extend(
        self,
        study_id: int,
        *,
        seeds: Iterable[int] = (),
        arms: Iterable[Mapping] = (),
        searches: int | None = None,
        space: Mapping[str, Mapping[str, Mapping]] | None = None,
    ) -> dict[str, Any]:
        """More seeds, arms, searches per arm, or other ranges for an arm (by label: its
        earlier searches are set aside) for a completed study; it is queued again."""
        body: dict[str, Any] = {"seeds": list(seeds), "arms": [dict(a) for a in arms]}
        if searches is not None:
            body["searches"] = searches
        if space:
            body["space"] = {arm: dict(overrides) for arm, overrides in space.items()}
        return self._call("POST", f"/studies/{study_id}/extend", json=body).json()

    def verdict(self, study_id: int) -> Verdict:
        return Verdict.from_dict(self._call("GET", f"/studies/{study_id}/verdict").json())

    def export(self, study_id: int, format: str = "json") -> bytes:
        return self._call("GET", f"/studies/{study_id}/export", params={"format": format}).content

    # -- trials --------------------------------------------------------------------------------

    def trials(self, study_id: int, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """The study's trials in order, fetched a page at a time."""
        offset = 0
        while True:
            page = self._call(
                "GET",
                f"/studies/{study_id}/trials",
                params={"offset": offset, "limit": page_size},
            ).json()
            yield from page["data"]
            offset += len(page["data"])
            if not page["data"] or offset >= page["count"]:
                return

    def trial(self, trial_id: int) -> dict[str, Any]:
        """One trial with its history per epoch and, if it failed, its full traceback."""
        return self._call("GET", f"/trials/{trial_id}").json()
