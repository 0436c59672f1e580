"""wrapped_while: Tune's methods wrapped for a fit() come back as they were, whatever happens."""

from __future__ import annotations

import pytest

from memtune.tuning.wrapping import wrapped_while


class Base:
    def value(self) -> int:
        return 1


class Child(Base):
    def own(self) -> int:
        return 2


def _plus_ten(original):
    return lambda self: original(self) + 10


def test_a_wrapped_method_is_the_wrap_inside_and_the_original_after_an_error():
    original = Child.own
    with pytest.raises(RuntimeError), wrapped_while(Child, "own", _plus_ten):
        assert Child().own() == 12
        raise RuntimeError("the fit failed")
    assert Child.own is original and Child().own() == 2


def test_an_inherited_method_is_inherited_again_after():
    with wrapped_while(Child, "value", _plus_ten):
        assert Child().value() == 11 and Base().value() == 1
    assert "value" not in vars(Child) and Child().value() == 1
