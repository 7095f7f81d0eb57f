"""The reconcile core: two frames of coupled rows compared field by field, under the comparison rules of
``d365kit.mapping.transforms`` (``normalize``/``equal``: trim, blank == null, case, decimals within a
tolerance, ...).

``field_differs`` compares one field of rows already paired by position; ``reconcile`` runs it for every
mapped field. ``compare`` pairs two frames by their key (the index, or a column) and runs it for a list of
``FieldSpec``: the difference matrix, per-field counts and the differing values side by side. Memory stays
bounded by one field at a time: each field's two columns are paired, normalized, compared and dropped
before the next one; only the boolean matrix and the differing values are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from d365kit.errors import UsageError
from d365kit.mapping.model import COMPARE_KINDS
from d365kit.mapping.transforms import equal, normalize

VALUE_COLUMNS = ("key", "field", "left", "right")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: an odd multiplier that spreads the bits


@dataclass(frozen=True)
class FieldSpec:
    """One compared field: its column in the left (BC) and right (Dataverse) frame, the comparison ``kind``
    (``d365kit.mapping.model.COMPARE_KINDS``), case sensitivity for text and the decimal ``tolerance``
    (absolute; default ``transforms.DEFAULT_TOLERANCE``, half a cent). ``name`` labels it in the results
    (default: the right column)."""

    left: str
    right: str
    kind: str = "text"
    case_sensitive: bool = False
    tolerance: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in COMPARE_KINDS:
            raise UsageError(f"kind {self.kind!r} is not one of {COMPARE_KINDS}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise UsageError(f"tolerance {self.tolerance!r} is not a number >= 0")

    @property
    def label(self) -> str:
        return self.name or self.right


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` found.

    ``diff``: one row per paired key (left order), one boolean column per field: the values differ.
    ``counts``: differing rows per field. ``values``: one row per differing cell (``key``, ``field``, the
    raw ``left`` and ``right`` values), fields in spec order. ``left_only``/``right_only``: keys found on one
    side only (not compared)."""

    diff: pd.DataFrame
    counts: pd.Series
    values: pd.DataFrame
    left_only: pd.Index
    right_only: pd.Index

    @property
    def cells(self) -> int:
        """Differing cells in all."""
        return int(self.counts.sum())


def field_differs(
    left: pd.Series,
    right: pd.Series,
    kind: str,
    case_sensitive: bool = False,
    tolerance: float | None = None,
) -> np.ndarray:
    """Position by position (indexes ignored): whether ``left`` and ``right`` differ once both are
    normalized for ``kind``; null equals null (and blank text), a value never equals null."""
    if len(left) != len(right):
        raise UsageError(f"cannot pair {len(left)} values with {len(right)}")
    a, b = _positional(left), _positional(right)
    differs = np.zeros(len(a), dtype=bool)
    rest = _not_identical(a, b)
    if rest is not None:
        a, b = pd.Series(a.array.take(rest), copy=False), pd.Series(b.array.take(rest), copy=False)
    same = equal(normalize(a, kind, case_sensitive), normalize(b, kind, case_sensitive), kind, tolerance)
    differs[slice(None) if rest is None else rest] = ~same.to_numpy(dtype=bool)
    return differs


def _not_identical(a: pd.Series, b: pd.Series) -> np.ndarray | None:
    """Positions of the text pairs that are not the very same string; None for other columns.

    The comparison rules are a function of each value, so a string and its identical twin compare equal
    under any kind: only the rest need normalizing, the few percent a reconcile is about."""
    if not (isinstance(a.dtype, pd.StringDtype) and a.dtype == b.dtype):
        return None
    return np.flatnonzero(~(a == b).fillna(False).to_numpy(dtype=bool))


def compare(
    left: pd.DataFrame,
    right: pd.DataFrame,
    fields: Sequence[FieldSpec],
    *,
    on: str | None = None,
    progress: bool = True,
) -> Comparison:
    """Pair the rows of ``left`` and ``right`` by key (column ``on``, else the index; keys must be unique
    on each side) and compare each of ``fields``. See ``Comparison``."""
    lkeys = pd.Index(left[on]) if on else left.index
    rkeys = pd.Index(right[on]) if on else right.index
    lpos, rpos = _pair(lkeys, rkeys)
    keys = (lkeys if lpos is None else lkeys.take(lpos)).rename(on or left.index.name)
    matrix = np.zeros((len(keys), len(fields)), dtype=bool, order="F")
    parts = []
    for j, spec in enumerate(tqdm(fields, desc="compare", unit=" fields", disable=not progress, delay=2)):
        a, b = _take(left[spec.left], lpos), _take(right[spec.right], rpos)
        matrix[:, j] = field_differs(a, b, spec.kind, spec.case_sensitive, spec.tolerance)
        hits = np.flatnonzero(matrix[:, j])
        if len(hits):
            parts.append(_side_by_side(spec.label, keys, a, b, hits))
    labels = [f.label for f in fields]
    diff = pd.DataFrame(matrix, index=keys, columns=labels, copy=False)
    counts = pd.Series(matrix.sum(axis=0), index=labels, name="differing", dtype="int64")
    values = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(VALUE_COLUMNS))
    left_only = lkeys[_unpaired(lpos, len(lkeys))]
    right_only = rkeys[_unpaired(rpos, len(rkeys))]
    return Comparison(diff, counts, values, left_only, right_only)


def _positional(values: pd.Series) -> pd.Series:
    """The same values on a fresh RangeIndex (no copy), so comparisons pair them by position."""
    return pd.Series(values.array, name=values.name, copy=False)


def _take(values: pd.Series, positions: np.ndarray | None) -> pd.Series:
    return _positional(values) if positions is None else pd.Series(values.array.take(positions), copy=False)


def _side_by_side(label: str, keys: pd.Index, a: pd.Series, b: pd.Series, hits: np.ndarray) -> pd.DataFrame:
    def raw(values: pd.Series) -> pd.Series:  # object dtype kept: pandas would re-infer strings, slowly
        return pd.Series(values.array.take(hits).to_numpy(dtype=object), dtype=object, copy=False)

    return pd.DataFrame({"key": keys.take(hits), "field": label, "left": raw(a), "right": raw(b)})


def _unpaired(positions: np.ndarray | None, n: int) -> np.ndarray:
    out = np.ones(n, dtype=bool)
    out[slice(None) if positions is None else positions] = False
    return out


# -- pairing by key ------------------------------------------------------------------------------------


def _pair(lkeys: pd.Index, rkeys: pd.Index) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Positions of the paired rows in each frame, in left order (None: every row, in order)."""
    if lkeys.equals(rkeys):
        if not _unique(lkeys):
            raise UsageError("duplicate keys: each key must name one row on each side")
        return None, None
    found = _hashed_indexer(lkeys, rkeys)
    if found is None:
        try:
            found = pd.Index(rkeys.to_numpy(dtype=object)).get_indexer(lkeys.to_numpy(dtype=object))
        except pd.errors.InvalidIndexError:
            raise UsageError("duplicate keys in the right frame: each key must name one row") from None
    lpos = np.flatnonzero(found >= 0)
    rpos = found[lpos]
    if len(rpos) and np.bincount(rpos).max() > 1:
        raise UsageError("duplicate keys in the left frame: each key must name one row")
    return (None if len(lpos) == len(lkeys) else lpos), rpos


def _unique(keys: pd.Index) -> bool:
    hashes = _fixed_width_hash(keys)
    return (hashes is not None and pd.Index(hashes).is_unique) or keys.is_unique


def _hashed_indexer(lkeys: pd.Index, rkeys: pd.Index) -> np.ndarray | None:
    """``rkeys.get_indexer(lkeys)`` for pyarrow-backed string keys of one byte length (GUIDs): a 64-bit
    hash of each key's bytes, computed with numpy on the Arrow buffers, is matched instead of the strings
    (a fifth of the time), then every match is checked on the strings themselves. None when the keys are
    not such strings, or on a hash collision: the caller then matches the strings."""
    lhash, rhash = _fixed_width_hash(lkeys), _fixed_width_hash(rkeys)
    if lhash is None or rhash is None:
        return None
    index = pd.Index(rhash)
    if not index.is_unique:
        return None
    found = index.get_indexer(lhash)
    hit = np.flatnonzero(found >= 0)
    paired = lkeys if len(hit) == len(lkeys) else lkeys.take(hit)
    if not (paired.array == rkeys.take(found[hit]).array).all():
        return None
    return found


def _fixed_width_hash(keys: pd.Index) -> np.ndarray | None:
    """A 64-bit hash per key when every key of an Arrow chunk has the same byte length; else None."""
    if getattr(keys.dtype, "storage", None) != "pyarrow" or keys.hasnans:
        return None
    import pyarrow as pa

    parts = [np.zeros(0, dtype=np.uint64)]
    for chunk in keys.array.__arrow_array__().chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return None
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths = np.diff(offsets)
        if len(lengths) and (lengths != lengths[0]).any():
            return None
        data = np.frombuffer(chunk.buffers()[2] or b"", dtype=np.uint8)[offsets[0] : offsets[-1]]
        parts.append(_hash_rows(data.reshape(len(chunk), int(lengths[0]) if len(lengths) else 0)))
    return np.concatenate(parts)


def _hash_rows(rows: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of bytes: multiply-xorshift over its 8-byte words (zero-padded)."""
    pad = -rows.shape[1] % 8
    words = np.ascontiguousarray(np.pad(rows, ((0, 0), (0, pad))) if pad else rows).view(np.uint64)
    h = np.zeros(len(rows), dtype=np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j]
        h *= _MIX
        h ^= h >> np.uint64(29)
    return h
