# Types of the compiled module (python/src/lib.rs). The public API re-exports most of it from
# `shmarrow`; keep this file in step with the #[pyfunction] signatures.
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

_PathLike = Union[str, os.PathLike[str]]
_Identity = Tuple[int, int]
_Number = Union[int, float, None]

DEFAULT_DIR: str
DIR_ENV: str

class ShmarrowError(Exception):
    name: Optional[str]

class SegmentNotFound(ShmarrowError, FileNotFoundError): ...
class SegmentExists(ShmarrowError, FileExistsError): ...
class AccessDenied(ShmarrowError, PermissionError): ...

class NoSpace(ShmarrowError, OSError):
    needed: int

class InvalidName(ShmarrowError, ValueError): ...

class InvalidColumn(ShmarrowError, ValueError):
    column: Optional[str]

class MapOverflow(ShmarrowError, OverflowError):
    column: Optional[str]

class NotAFile(ShmarrowError): ...
class CorruptSegment(ShmarrowError): ...
class NotZeroCopy(ShmarrowError): ...
class InvalidTable(ShmarrowError): ...
class ChannelError(ShmarrowError): ...
class ChannelTimeout(ChannelError, TimeoutError): ...

class Created:
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def lifetime(self) -> str: ...
    @property
    def identity(self) -> _Identity: ...
    def close(self) -> None: ...
    def disown(self) -> None: ...
    def __enter__(self) -> Created: ...
    def __exit__(self, ty: object, value: object, tb: object) -> bool: ...
    def __reduce__(self) -> Tuple[Any, Tuple[str, str, _Identity]]: ...

class Lock:
    def release(self) -> None: ...
    def __enter__(self) -> Lock: ...
    def __exit__(self, ty: object, value: object, tb: object) -> bool: ...

class Mapping: ...

class ColumnPart:
    @property
    def __array_interface__(self) -> Dict[str, Any]: ...

class Allocation:
    def raw(self, column: str) -> Tuple[Mapping, int, int, str]: ...
    def publish(self) -> Created: ...
    def close(self) -> None: ...

class Subscription:
    @property
    def missed(self) -> int: ...
    @property
    def schema(self) -> pa.Schema: ...
    def __iter__(self) -> Iterator[pa.RecordBatch]: ...
    def __next__(self) -> pa.RecordBatch: ...
    def close(self) -> None: ...

class Producer:
    @property
    def consumers(self) -> int: ...
    def send(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Producer: ...
    def __exit__(self, ty: object, value: object, tb: object) -> bool: ...

def attach(
    name: str,
    *,
    dir: Optional[_PathLike] = None,
    strict: bool = False,
    validate: str = "auto",
) -> Tuple[pa.Table, _Identity]: ...
def column_view(
    name: str,
    column: Union[str, int],
    *,
    dir: Optional[_PathLike] = None,
    validate: str = "auto",
) -> List[np.ndarray]: ...
def create(
    name: str,
    data: Any,
    *,
    dir: Optional[_PathLike] = None,
    replace: bool = True,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Created: ...
def remove(name: str, *, dir: Optional[_PathLike] = None) -> bool: ...
def path(name: str, *, dir: Optional[_PathLike] = None) -> str: ...
def list(*, dir: Optional[_PathLike] = None) -> List[Dict[str, Any]]: ...
def gc(*, dir: Optional[_PathLike] = None, dry_run: bool = False) -> List[str]: ...
def reduce(
    name: str,
    columns: Optional[Sequence[str]] = None,
    ops: Optional[Sequence[str]] = None,
    threads: Optional[int] = None,
    *,
    ddof: int = 0,
    processes: Optional[int] = None,
    dir: Optional[_PathLike] = None,
) -> Dict[str, Dict[str, _Number]]: ...
def _reduce_worker(
    name: str,
    results: str,
    columns: Sequence[str],
    worker: int,
    workers: int,
    *,
    validate: str,
    dir: _PathLike,
) -> None: ...
# One chunk's mergeable state: (count, null_count, sum, sum_low, mean, mean_low, m2, min, max, nan).
_Partial = Tuple[int, int, _Number, float, float, float, float, Optional[_Number], Optional[_Number], bool]

def reduce_partials(
    name: str,
    columns: Optional[Sequence[str]] = None,
    threads: Optional[int] = None,
    *,
    dir: Optional[_PathLike] = None,
) -> List[Tuple[str, bool, List[_Partial]]]: ...
def merge_partials(
    column: str,
    is_int: bool,
    partials: Sequence[_Partial],
    ops: Optional[Sequence[str]] = None,
    *,
    ddof: int = 0,
) -> Dict[str, _Number]: ...
def map_inplace(
    name: str,
    column: str,
    op: str,
    *args: float,
    threads: Optional[int] = None,
    dir: Optional[_PathLike] = None,
    wrap: bool = False,
    rows: Optional[Tuple[int, int]] = None,
) -> None: ...
def lock(
    name: str,
    shared: bool = True,
    *,
    dir: Optional[_PathLike] = None,
    rows: Optional[Tuple[int, int]] = None,
) -> Lock: ...
def allocate(
    name: str,
    schema: pa.Schema,
    rows: int,
    *,
    dir: Optional[_PathLike] = None,
    replace: bool = True,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Allocation: ...
def subscribe(
    name: str, *, dir: Optional[_PathLike] = None, timeout: Optional[float] = None
) -> Subscription: ...
def producer(
    name: str,
    schema: Optional[pa.Schema] = None,
    *,
    dir: Optional[_PathLike] = None,
    slots: int = 8,
    slot_size: int = 16 << 20,
    lossy: bool = False,
    max_consumers: int = 16,
    timeout: Optional[float] = None,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Producer: ...
