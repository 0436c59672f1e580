"""Ray Tune trainables and the runner that turns a study spec into Tuner runs."""

from __future__ import annotations

import os
import secrets

if not os.environ.get("RAY_ADDRESS"):
    # For the local Ray that memtune starts itself. Both are read when ray is imported, so
    # they are set here, before any module of this package imports ray. A driver that joins a
    # real cluster (RAY_ADDRESS) must stay reachable and use the cluster's token: left alone.
    # - bind every Ray server to 127.0.0.1 (Ray's own switch for that);
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # - token authentication on, with a token that lives in this process's environment (and
    #   its workers'), where Ray would otherwise write one to ~/.ray/auth_token.
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
# Tune's CSV/JSON/TensorBoard loggers: memtune streams results to its own sink instead.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Tune's own console tables: memtune shows its own progress bar (verbose=0 is honoured by the
# classic reporter only).
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Keeping one checkpoint per trial forces an experiment snapshot per epoch; short trials make
# Tune warn about it at every one. The snapshots are cheap here (local disk).
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
