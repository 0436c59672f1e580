"""A method of Ray Tune's wrapped for the length of a ``fit()``: the hooks Tune lacks (before
a snapshot is written, after a trial's failure is counted, when the time budget runs out).
Ray is pinned (2.60.0), so the wrapped methods are fixed; one ``fit()`` runs per process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["wrapped_while"]


@contextlib.contextmanager
def wrapped_while(
    owner: type, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """While it holds, ``owner.name`` is ``wrap(original)``; the original comes back after,
    whatever happens inside."""
    own = name in vars(owner)
    original = getattr(owner, name)
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:  # it was inherited: inherit it again
            delattr(owner, name)
