"""char_lm's splits: validation and test are text of the same kind as the training text."""

from __future__ import annotations

import string

import pytest
import torch

from memtune.studies import datasets


def _shares(ids: torch.Tensor) -> dict[str, float]:
    """The share of spaces, punctuation and letters among the characters of ``ids``."""
    _, alphabet = datasets.english_text()
    text = "".join(alphabet[i] for i in ids.tolist())
    return {
        "spaces": text.count(" ") / len(text),
        "punctuation": sum(c in string.punctuation for c in text) / len(text),
        "letters": sum(c.isalpha() for c in text) / len(text),
    }


@pytest.mark.parametrize("held", [2048, 5000, 20_000])  # smoke, --quick and the default
def test_validation_and_test_text_look_like_the_training_text(held):
    train, val, test = datasets.english_text_split(held)
    ids, _ = datasets.english_text()
    assert len(val) == len(test) >= held and len(train) + len(val) + len(test) <= len(ids)
    assert len(train) > 0.9 * len(ids)
    reference = _shares(train)
    for split in (val, test):
        for name, share in _shares(split).items():
            print(f"held {held}: {name} {share:.3f} (train {reference[name]:.3f})")
            assert share == pytest.approx(reference[name], abs=0.03), name


def test_the_held_out_blocks_are_fixed_by_the_split_seed_and_disjoint():
    first, second = datasets.english_text_split(5000), datasets.english_text_split(5000)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    ids, _ = datasets.english_text()
    blocks = ids[: len(ids) // datasets.CHAR_BLOCK * datasets.CHAR_BLOCK].view(
        -1, datasets.CHAR_BLOCK
    )
    where = {tuple(block.tolist()): n for n, block in enumerate(blocks)}
    val, test = (split.view(-1, datasets.CHAR_BLOCK) for split in first[1:])
    val_blocks = {where[tuple(b.tolist())] for b in val}
    test_blocks = {where[tuple(b.tolist())] for b in test}
    assert not val_blocks & test_blocks
    # spread over the whole text, not its end (where the old split took them from)
    assert min(val_blocks) < len(blocks) / 10 and max(test_blocks) > 0.9 * len(blocks)


def test_the_old_ordered_split_was_of_another_kind_of_text():
    """What the interleaved split replaced: the last 2 x 5,000 characters, a reference table
    for validation (a third spaces) and prose for test."""
    ids, _ = datasets.english_text()
    val, test = ids[-10_000:-5_000], ids[-5_000:]
    assert _shares(val)["spaces"] - _shares(test)["spaces"] > 0.1
