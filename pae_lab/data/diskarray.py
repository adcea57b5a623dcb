"""Arrays too large to hold: `.npy` files written batch by batch and read back batch by batch.

`NpyWriter` writes a standard `.npy` (header first, rows appended, renamed into place on close),
so `np.load(path, mmap_mode="r")` reads it anywhere. `DiskArray` reads rows of such a file with
`os.pread` into fresh buffers instead of mapping it: touched pages of a memory map count in a
process's RSS, so a pass over a mapped 20k-image split grows RSS with the split; a pread keeps it
at one batch. Both pickle by path, so DataLoader workers and submitit jobs can share them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


class NpyWriter:
    """Append rows of a known final shape; `close()` checks the count and renames the file into place."""

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype: Any):
        self.path, self.shape, self.dtype = Path(path), tuple(int(s) for s in shape), np.dtype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._fh = open(self._tmp, "wb")
        np.lib.format.write_array_header_2_0(self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                        "fortran_order": False, "shape": self.shape})
        self.rows = 0

    def write(self, rows: np.ndarray | torch.Tensor) -> None:
        rows = rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]} do not fit {self.shape[1:]}")
        if self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: more than the declared {self.shape[0]} rows")
        self._fh.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def close(self) -> Path:
        self._fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: {self.rows} rows written, {self.shape[0]} declared")
        os.replace(self._tmp, self.path)
        return self.path

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, kind, *rest) -> None:
        if kind is None:
            self.close()
        else:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)


class DiskArray:
    """Rows of a C-order `.npy` file, read on demand: `a[i]`, `a[i:j]`, `a[index_array]` return ndarrays."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no array file at {self.path}")
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            self.offset = fh.tell()
        if fortran:
            raise ValueError(f"{self.path}: Fortran-order arrays are not supported")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}  # each process opens its own descriptor

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _rows(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start)
        buf = os.pread(self._file(), count * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(bytearray(buf), self.dtype).reshape(count, *self.shape[1:])

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {index} out of range for {len(self)} rows")
            return self._rows(i, i + 1)[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            rows = self._rows(start, stop)
            return rows if step == 1 else rows[::step].copy()
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if idx.dtype == bool:
            idx = np.nonzero(idx)[0]
        idx = np.where(idx < 0, idx + len(self), idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        for k, i in enumerate(idx):
            out[k] = self._rows(int(i), int(i) + 1)[0]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole array: only for small files (tests, tiny studies)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
