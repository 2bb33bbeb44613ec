"""Lists of dataclass records packed column by column, for a cheap trip between processes.

Pickle reduces every numpy array on its own (a few microseconds each, both ways), and an
:class:`~.records.ImageRecord` holds about thirty small ones with its nested dataclasses.
A :class:`RecordBatch` walks the records' dataclass fields generically and keeps each field as
one column: arrays of one dtype and number of dimensions concatenated in a single bytes buffer
(with their shapes), nested dataclasses as columns of their own fields, a column with some
None as the column of the others, and anything else (strings, numbers, dicts, lists, mixed
columns) as a plain list, which pickle handles in C. A batch pickles as one buffer and a few
lists, whatever the number of records.

Unpacking gives records equal to the packed ones field by field: the same types, dtypes,
shapes and values (NaN included), without calling ``__init__`` (as pickle). Each array is a
writeable, C-ordered view of its column's own copy of the buffer; no two overlap (an array
that several records shared comes back as one array each).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RecordBatch"]

# Column kinds (the first item of a column's tuple).
_VALUES = 0  # (_VALUES, values): pickled as they are
_ARRAYS = 1  # (_ARRAYS, dtype str, ndim, byte offset in the buffer, shapes flattened)
_DATACLASS = 2  # (_DATACLASS, class, field names, one column per field)
_OPTIONAL = 3  # (_OPTIONAL, bytes: 1 where a value is not None, the column of those values)

_PACKABLE: dict[np.dtype, bool] = {}


def _packable_dtype(dtype: np.dtype) -> bool:
    """Whether ``dtype.str`` names the dtype exactly and its items are plain bytes."""
    if dtype.metadata is not None:  # equal dtypes, and equal hashes, with or without it
        return False
    known = _PACKABLE.get(dtype)
    if known is None:
        known = _PACKABLE[dtype] = (not dtype.hasobject and dtype.fields is None
                                    and dtype.subdtype is None and np.dtype(dtype.str) == dtype)
    return known


def _same_arrays(values: list) -> bool:
    """Whether every value is a plain ndarray of the first one's dtype and dimensions."""
    first = values[0]
    if type(first) is not np.ndarray or not _packable_dtype(first.dtype):
        return False
    dtype, ndim = first.dtype, first.ndim
    return all(type(v) is np.ndarray and v.ndim == ndim
               and (v.dtype is dtype or (v.dtype == dtype and v.dtype.metadata is None))
               for v in values)


def _fields_of(values: list) -> tuple[str, ...] | None:
    """The field names of the values' dataclass, or None if they cannot be packed by field.

    Returns:
        The names when every value is an instance of the first one's dataclass (not a
        subclass) whose ``__dict__`` holds exactly its fields (no extra attribute, no slots).
    """
    kind = type(values[0])
    if not dataclasses.is_dataclass(kind):
        return None
    names = tuple(f.name for f in dataclasses.fields(kind))
    wanted = set(names)
    for value in values:
        if type(value) is not kind or getattr(value, "__dict__", None) is None:
            return None
        if value.__dict__.keys() != wanted:
            return None
    return names


class _Packer:
    """Builds the columns of a batch and the buffer their arrays live in."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def column(self, values: list) -> tuple:
        """One column: the most compact kind that gives ``values`` back exactly."""
        if not values:
            return (_VALUES, values)
        present = [v is not None for v in values]
        if not all(present):
            inner = self.column([v for v in values if v is not None]) if any(present) else None
            if inner is None or inner[0] == _VALUES:
                return (_VALUES, values)
            return (_OPTIONAL, bytes(present), inner)
        if _same_arrays(values):
            return self._arrays(values)
        names = _fields_of(values)
        if names is not None:
            columns = [self.column([v.__dict__[name] for v in values]) for name in names]
            return (_DATACLASS, type(values[0]), names, columns)
        return (_VALUES, values)

    def _arrays(self, values: list[np.ndarray]) -> tuple:
        first = values[0]
        data = b"".join([v.tobytes() for v in values])  # each in its own dtype, C order
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        shapes = [d for v in values for d in v.shape]
        return (_ARRAYS, first.dtype.str, first.ndim, offset, shapes)


def _unpack(column: tuple, buffer: bytes, count: int) -> list:
    """The ``count`` values of one column."""
    kind = column[0]
    if kind == _VALUES:
        return column[1]
    if kind == _ARRAYS:
        _, dtype, ndim, offset, dims = column
        if ndim == 1:
            sizes, shapes = dims, None
        else:
            shapes = [tuple(dims[i * ndim : (i + 1) * ndim]) for i in range(count)]
            sizes = [math.prod(s) for s in shapes]
        ends = list(itertools.accumulate(sizes))
        starts = [0, *ends[:-1]]
        # a copy per column: writeable and aligned, as arrays unpickled one by one are
        flat = np.frombuffer(buffer, np.dtype(dtype), ends[-1], offset).copy()
        if shapes is None:
            return [flat[a:b] for a, b in zip(starts, ends, strict=True)]
        return [flat[a:b].reshape(s) for a, b, s in zip(starts, ends, shapes, strict=True)]
    if kind == _DATACLASS:
        _, cls, names, columns = column
        records = []
        new = cls.__new__
        rows = zip(*(_unpack(c, buffer, count) for c in columns), strict=True) if columns \
            else [()] * count
        for values in rows:
            record = new(cls)
            record.__dict__.update(zip(names, values, strict=True))
            records.append(record)
        return records
    if kind == _OPTIONAL:
        _, present, inner = column
        found = iter(_unpack(inner, buffer, sum(present)))
        return [next(found) if p else None for p in present]
    raise ValueError(f"unknown column kind {kind!r}")


class RecordBatch:
    """Records that pickle as one buffer of array data plus a few lists.

    The records are dataclass instances, usually :class:`~.records.ImageRecord` (any values
    are kept; those that are not dataclasses of one class simply pickle as they are).

    Attributes:
        count: the number of records.
        column: the records' column (see the module's description).
        buffer: every packed array's bytes, column after column.
    """

    def __init__(self, records: Sequence[Any]) -> None:
        """Pack ``records``."""
        packer = _Packer()
        self.count = len(records)
        self.column = packer.column(list(records))
        self.buffer = b"".join(packer.parts)

    def __len__(self) -> int:
        return self.count

    def unpack(self) -> list:
        """The records, equal to the packed ones field by field."""
        return _unpack(self.column, self.buffer, self.count)
