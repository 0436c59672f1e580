"""A claimed study's lease: a thread renews it while the study runs and notices a cancel
request or that the study went to another worker."""

from __future__ import annotations

import logging
import threading

from memtune.service.store.repository import Repository
from memtune.service.store.session import Database

log = logging.getLogger(__name__)


class Lease(threading.Thread):
    """Renews a study's lease until stopped; records a cancel request or a lost lease."""

    def __init__(self, db: Database, study_id: int, worker_id: str, lease_s: float) -> None:
        super().__init__(name=f"lease-{study_id}", daemon=True)
        self.db, self.study_id, self.worker_id, self.lease_s = db, study_id, worker_id, lease_s
        self.cancel_requested = False
        self.lost = False
        self._halt = threading.Event()  # not _stop: Thread has a method of that name

    def run(self) -> None:
        while not self._halt.wait(min(self.lease_s / 3, 1.0)):
            try:
                with self.db.session() as session:
                    ours, cancel = Repository(session).renew_lease(
                        self.study_id, self.worker_id, self.lease_s
                    )
            except Exception:  # a database hiccup: try again at the next tick
                log.warning("could not renew the lease of study %s", self.study_id, exc_info=True)
                continue
            self.cancel_requested = self.cancel_requested or cancel
            if not ours:
                self.lost = True
                log.warning("study %s: lease lost to another worker; stopping", self.study_id)

    def stop(self) -> None:
        self._halt.set()
