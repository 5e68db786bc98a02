"""Read a CTranslate2 model file (`model.bin`) into NumPy arrays, without the CTranslate2 runtime.

Layout (binary version 6, as written by `ctranslate2.specs.model_spec.ModelSpec.save`): u32 version,
spec name, u32 spec revision, u32 variable count, then per variable its name, u8 rank, u32 dims, u8 dtype,
u32 byte count and the raw little-endian data; then u32 alias count and (alias, target) name pairs.
Strings are a u16 length (the NUL included) followed by the bytes and a NUL.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechpeft.errors import InputError

SUPPORTED_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5 (bf16) has no NumPy dtype


@dataclass(frozen=True)
class Ct2Model:
    """The variables of one CTranslate2 model: name -> array, aliases resolved."""

    spec: str  # e.g. "WhisperSpec"
    revision: int
    variables: dict[str, np.ndarray]


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise InputError(f"{self.path} is truncated at byte {self.pos} (needs {size} more bytes)")
        view = memoryview(self.data)[self.pos : self.pos + size]
        self.pos += size
        return view

    def number(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        start = self.pos
        raw = bytes(self.take(self.number("<H")))
        if not raw.endswith(b"\0"):
            raise InputError(f"{self.path}: the string at byte {start} does not end with a NUL (not a model file?)")
        try:
            return raw[:-1].decode()
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: the string at byte {start} is not UTF-8 (not a model file?)") from None


def read_ct2(data: bytes, path: str | Path) -> Ct2Model:
    """Every variable of a CTranslate2 model file's bytes `data` (read from `path`, named in errors); aliases
    (tied weights) point to the same array. The arrays are views into `data`.

    Raises InputError when the bytes are not a version-6 CTranslate2 file, are truncated or inconsistent, or use
    bf16.
    """
    cursor = _Cursor(data, Path(path))
    version = cursor.number("<I")
    if version != SUPPORTED_VERSION:
        raise InputError(f"{path}: CTranslate2 binary version {version}; only version {SUPPORTED_VERSION} is read")
    spec, revision = cursor.string(), cursor.number("<I")
    variables = dict(_variable(cursor) for _ in range(cursor.number("<I")))
    for _ in range(cursor.number("<I")):
        alias, target = cursor.string(), cursor.string()
        if target not in variables:
            raise InputError(f"{path}: alias {alias!r} points to {target!r}, which the file does not hold")
        variables[alias] = variables[target]
    return Ct2Model(spec, revision, variables)


def _variable(cursor: _Cursor) -> tuple[str, np.ndarray]:
    name = cursor.string()
    shape = tuple(cursor.number("<I") for _ in range(cursor.number("<B")))
    code, size = cursor.number("<B"), cursor.number("<I")
    if code not in DTYPES:
        raise InputError(f"{cursor.path}: variable {name!r} has dtype code {code}, which is not supported")
    dtype = np.dtype(DTYPES[code]).newbyteorder("<")
    if size != math.prod(shape) * dtype.itemsize:
        raise InputError(f"{cursor.path}: variable {name!r} of shape {shape} and dtype {dtype} holds {size} bytes")
    return name, np.frombuffer(cursor.take(size), dtype=dtype).reshape(shape)
