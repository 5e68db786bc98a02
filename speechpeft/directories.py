"""Directories replaced whole, so a crash at any moment leaves a complete version on disk.

A writer builds the new version in `NAME.tmp` (`staging_directory`), then `replace_directory` moves the
current `NAME` aside to `NAME.old`, renames `NAME.tmp` to `NAME` and deletes `NAME.old`. A crash between
those two renames leaves no `NAME`, only `NAME.old`: `recover_directory` puts it back. Readers call it
before they look, and `staging_directory` calls it before a writer starts over.

Writers of one `NAME` take turns (`writer_lock`): `staged_replacement` holds an OS lock on `NAME.writer.lock` from
staging to the last rename, and a recovery takes it too, so it never puts back the previous version under a
writer that is between its two renames. The lock file exists only while held (or after a killed holder, whose
lock the OS released; the next writer removes it), so a directory holds nothing but its versions.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_SUFFIX = ".tmp"  # the next version, being written
RETIRED_SUFFIX = ".old"  # the previous version, between the two renames of a swap
LOCK_SUFFIX = ".writer.lock"  # the file writers of one directory lock in turn (`.lock` alone: filelock's, which
# a caller may hold around a whole staged replacement, as `backbones.imported` does)
RESERVED_SUFFIXES = (STAGING_SUFFIX, RETIRED_SUFFIX, ".lock")  # names no directory of our own may end with
_held = threading.local()  # `locks`: the lock files this thread holds, so a holder may take its lock again


def staged_path(target: Path) -> Path:
    return target.with_name(target.name + STAGING_SUFFIX)


def retired_path(target: Path) -> Path:
    return target.with_name(target.name + RETIRED_SUFFIX)


@contextmanager
def writer_lock(target: Path) -> Iterator[None]:
    """Hold the lock writers of `target` take in turn: exclusive across threads and processes (a killed holder's
    lock is released by the OS), reentrant within a thread.

    Creates `target`'s parent directory for `target.writer.lock`; raises OSError when it cannot.
    """
    target = Path(target).resolve()  # one lock, whichever way a caller spells the path
    lock = target.with_name(target.name + LOCK_SUFFIX)
    held = _held.__dict__.setdefault("locks", set())
    if lock in held:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _lock_file(lock)
    held.add(lock)
    try:
        yield
    finally:
        held.discard(lock)
        lock.unlink(missing_ok=True)  # before unlocking: a waiter on this file then finds it gone and starts over
        os.close(descriptor)


def _lock_file(lock: Path) -> int:
    """An open descriptor of `lock`, exclusively flock-ed, and still the file at that path (not one a holder
    removed while this thread waited on it)."""
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)


def recover_directory(target: Path) -> None:
    """Restore `target` from `target.old` when a swap was interrupted between its two renames.

    Leaves a half-written `target.tmp` alone (a writer may still be filling it). Raises OSError when the
    rename is refused (a read-only install, for one).
    """
    target = Path(target)
    retired = retired_path(target)
    if not (retired.is_dir() and not target.exists()):
        return
    with writer_lock(target):  # a live writer between its renames finishes first, and then nothing is left to do
        if retired.is_dir() and not target.exists():
            retired.replace(target)


def staging_directory(target: Path) -> Path:
    """The empty (not yet created) `target.tmp` a writer fills before `replace_directory`.

    Recovers `target` first and deletes what an interrupted writer left in `target.tmp`.
    """
    target = Path(target)
    recover_directory(target)
    staged = staged_path(target)
    shutil.rmtree(staged, ignore_errors=True)
    return staged


def replace_directory(staged: Path, target: Path) -> None:
    """Put the complete directory `staged` in place of `target` (which may not exist yet).

    The staged files reach the disk before the first rename (a power cut cannot leave them empty). Until the
    last rename `target` or `target.old` holds the previous version, so a crash loses nothing that
    `recover_directory` cannot bring back; an exception from that rename puts the previous version back and
    propagates. Raises FileNotFoundError when `staged` does not exist.
    """
    staged, target = Path(staged), Path(target)
    if not staged.is_dir():
        raise FileNotFoundError(f"nothing staged at {staged} to replace {target} with")
    _sync_tree(staged)
    retired = retired_path(target)
    if target.exists():
        shutil.rmtree(retired, ignore_errors=True)  # a stale one, left after a swap that completed
        target.replace(retired)
    try:
        staged.replace(target)
    except BaseException:
        recover_directory(target)
        raise
    _sync(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def _sync_tree(directory: Path) -> None:
    for folder, _, files in os.walk(directory):
        for name in files:
            _sync(Path(folder) / name)
        _sync(Path(folder))


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def staged_replacement(target: Path) -> Iterator[Path]:
    """Yield `staging_directory(target)` to fill; it replaces `target` when the block ends without raising.

    Holds `target`'s writer lock throughout, so concurrent writers of `target` take turns. When the block
    raises, the staged copy is deleted, `target` stays as it was, and the exception propagates.
    """
    with writer_lock(target):
        staged = staging_directory(target)
        try:
            yield staged
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        replace_directory(staged, target)
