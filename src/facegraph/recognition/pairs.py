"""Verification pairs: the LFW pairs.txt reader, image availability, and seeded pairs for any labelled split."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from facegraph.data.textfile import read_lines
from facegraph.errors import ConfigError, DataError


@dataclass(frozen=True)
class Pair:
    """Two images (paths relative to the images root), whether they show the same person, and the pair's fold."""

    first: str
    second: str
    same: bool
    fold: int


def lfw_image_path(name: str, number: int) -> str:
    """Image `number` (1-based) of `name` in the official LFW layout: ``name/name_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def _parse_header(path: Path, text: str) -> tuple[int, int]:
    """(folds, pairs of each kind per fold) from the first line: ``10 300`` (view 2) or ``N`` (view 1, one fold)."""
    fields = text.split()
    if len(fields) not in (1, 2) or not all(field.isascii() and field.isdigit() and int(field) > 0 for field in fields):
        raise DataError(f"{path}, line 1: expected a header `folds pairs_per_fold` or `pairs`, got {text!r}")
    if len(fields) == 1:
        return 1, int(fields[0])
    return int(fields[0]), int(fields[1])


def _image_number(path: Path, line_number: int, field: str, text: str) -> int:
    if not (field.isascii() and field.isdigit()) or int(field) < 1:
        raise DataError(f"{path}, line {line_number}: image number {field!r} is not a positive integer in {text!r}")
    return int(field)


def read_lfw_pairs(path: Path | str) -> list[Pair]:
    """Read an LFW pairs file: view 2 ``pairs.txt`` (header ``folds n``) or view 1 ``pairsDev*.txt`` (header ``n``).

    Each fold holds n matched lines ``name i j`` then n mismatched lines ``name1 i name2 j`` (tab or space
    separated); folds are numbered from 0 in file order. Any deviation (field count, image number, a missing or extra
    line, text that is not UTF-8) raises DataError naming the file, the line and its text; trailing blank lines are
    allowed.
    """
    path = Path(path)
    lines = read_lines(path, "pairs file")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    folds, per_fold = _parse_header(path, lines[0])
    expected_lines = 1 + 2 * folds * per_fold
    pairs = []
    for offset, text in enumerate(lines[1:expected_lines]):
        line_number = offset + 2
        fold, position = divmod(offset, 2 * per_fold)
        fields = text.split()
        if position < per_fold:
            if len(fields) != 3:
                raise DataError(f"{path}, line {line_number}: a matched pair needs 3 fields `name i j`, "
                                f"got {len(fields)} in {text!r}")
            name, first, second = fields
            pairs.append(Pair(lfw_image_path(name, _image_number(path, line_number, first, text)),
                              lfw_image_path(name, _image_number(path, line_number, second, text)), True, fold))
        else:
            if len(fields) != 4:
                raise DataError(f"{path}, line {line_number}: a mismatched pair needs 4 fields `name1 i name2 j`, "
                                f"got {len(fields)} in {text!r}")
            first_name, first, second_name, second = fields
            if first_name == second_name:
                raise DataError(f"{path}, line {line_number}: a mismatched pair names the same person twice in {text!r}")
            pairs.append(Pair(lfw_image_path(first_name, _image_number(path, line_number, first, text)),
                              lfw_image_path(second_name, _image_number(path, line_number, second, text)), False, fold))
    if len(lines) < expected_lines:
        raise DataError(f"{path}, line {len(lines) + 1}: the file ends after {len(lines) - 1} pair lines; "
                        f"the header {lines[0].strip()!r} promises {expected_lines - 1} pairs")
    if len(lines) > expected_lines:
        raise DataError(f"{path}, line {expected_lines + 1}: extra line after the {expected_lines - 1} pairs "
                        f"the header promises: {lines[expected_lines]!r}")
    return pairs


def split_available(pairs: Sequence[Pair], images_root: Path | str) -> tuple[list[Pair], list[Pair]]:
    """(kept, missing): pairs whose two image files exist under `images_root`, and those missing one or both."""
    images_root = Path(images_root)
    exists: dict[str, bool] = {}

    def present(relative: str) -> bool:
        if relative not in exists:
            exists[relative] = (images_root / relative).is_file()
        return exists[relative]

    kept, missing = [], []
    for pair in pairs:
        (kept if present(pair.first) and present(pair.second) else missing).append(pair)
    return kept, missing


def _draw_distinct(rng: np.random.Generator, count: int, available: int, draw: Callable[[], tuple[int, int]],
                   kind: str, fold: int) -> list[tuple[int, int]]:
    """`count` distinct unordered index pairs from `draw()`, each in a random order; DataError if they cannot be had."""
    if available < count:
        raise DataError(f"fold {fold} has only {available} distinct {kind} pairs, {count} are needed: "
                        "ask for fewer pairs or folds")
    chosen: dict[tuple[int, int], None] = {}
    attempts_left = 50 * count + 1000
    while len(chosen) < count:
        if not attempts_left:
            raise DataError(f"fold {fold}: could not draw {count} distinct {kind} pairs out of {available}: "
                            "ask for fewer pairs or folds")
        attempts_left -= 1
        first, second = draw()
        chosen.setdefault((min(first, second), max(first, second)), None)
    return [pair if rng.random() < 0.5 else pair[::-1] for pair in chosen]


def _draw_matched(rng: np.random.Generator, groups: list[list[int]]) -> tuple[int, int]:
    """Two different images of one person drawn uniformly among `groups` (each a person's image indices, 2+ each)."""
    images = groups[rng.integers(len(groups))]
    first, second = rng.choice(len(images), size=2, replace=False)
    return images[first], images[second]


def _draw_mismatched(rng: np.random.Generator, groups: list[list[int]]) -> tuple[int, int]:
    """One image each of two different people drawn uniformly among `groups`."""
    first, second = rng.choice(len(groups), size=2, replace=False)
    return groups[first][rng.integers(len(groups[first]))], groups[second][rng.integers(len(groups[second]))]


def sample_pairs(paths: Sequence[str], identities: Sequence[Hashable], num_pairs: int, seed: int, folds: int = 10) -> list[Pair]:
    """Seeded verification pairs from any labelled image list, LFW style: `folds` folds of disjoint people.

    The identities are shuffled and dealt round-robin to the folds (those with 2+ images first, so each fold gets its
    share of them); each fold then holds num_pairs / (2 * folds) matched pairs (a person drawn uniformly among the
    fold's people with 2+ images, then two of their images) and as many mismatched pairs (two different people of the
    fold, one image each), all distinct. Returned per fold, matched pairs first, as in pairs.txt.
    """
    if len(paths) != len(identities):
        raise DataError(f"{len(paths)} image paths but {len(identities)} identities")
    if folds < 1 or num_pairs < 1 or num_pairs % (2 * folds):
        raise ConfigError(f"num_pairs ({num_pairs}) must be a positive multiple of 2 * folds ({2 * folds})")
    per_kind = num_pairs // (2 * folds)
    images_of: dict[Hashable, list[int]] = defaultdict(list)
    for index, identity in enumerate(identities):
        images_of[identity].append(index)
    people = list(images_of)
    rng = np.random.default_rng(seed)
    shuffled = [people[index] for index in rng.permutation(len(people))]
    repeated = [person for person in shuffled if len(images_of[person]) >= 2]
    if len(repeated) < folds:
        raise DataError(f"{len(repeated)} identities have 2+ images; {folds} folds need at least one each")
    dealt = repeated + [person for person in shuffled if len(images_of[person]) < 2]
    pairs = []
    for fold in range(folds):
        groups = [images_of[person] for person in dealt[fold::folds]]
        sizes = np.array([len(group) for group in groups])
        matched = _draw_distinct(rng, per_kind, int((sizes * (sizes - 1) // 2).sum()),
                                 partial(_draw_matched, rng, [group for group in groups if len(group) >= 2]), "matched", fold)
        mismatched = _draw_distinct(rng, per_kind, int((sizes.sum() ** 2 - (sizes ** 2).sum()) // 2),
                                    partial(_draw_mismatched, rng, groups), "mismatched", fold)
        pairs += [Pair(paths[first], paths[second], True, fold) for first, second in matched]
        pairs += [Pair(paths[first], paths[second], False, fold) for first, second in mismatched]
    return pairs
