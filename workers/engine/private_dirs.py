"""The engine child's private folders on the host: their names (which worker made them), their
removal without recursion, and the removal of those whose worker is gone.

A folder is named audit-engine-<worker pid>-<its start time in clock ticks>-<random>; the reaper
(workers/tasks.py) and each new worker process remove ones whose worker is gone.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import time


# the private folders' name: audit-engine-<worker pid>-<its start time in clock ticks>-<random>;
# the reaper (workers/tasks.py) and each new worker process remove ones whose worker is gone
PRIVATE_DIR_PREFIX = "audit-engine-"
PRIVATE_DIR_RE = re.compile(r"^audit-engine-(\d+)-(\d+)-")
# folders named otherwise (before owners were recorded) go once they are this old
LEGACY_PRIVATE_DIR_AGE_S = 24 * 3600


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): with
    the pid, it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def private_dir_prefix() -> str:
    pid = os.getpid()
    return f"{PRIVATE_DIR_PREFIX}{pid}-{_start_ticks(pid) or 0}-"


def remove_tree(path: str) -> bool:
    """Remove ``path`` and everything below it; True when it is gone. Iterative, through
    directory descriptors, one open at a time: a tree of any depth (a 3,000-deep chain is past
    Python's recursion limit and past PATH_MAX) or width goes, symlinks are removed and never
    followed, and a folder the child made unwritable is made writable first. Never raises."""
    try:
        top = os.lstat(path)
    except OSError:
        return True
    if not stat.S_ISDIR(top.st_mode):
        try:
            os.unlink(path)
        except OSError:
            pass
        return not os.path.lexists(path)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    names: list[str] = []  # the chain of folder names from ``path`` down to the one open
    idents = [(top.st_dev, top.st_ino)]
    try:
        while True:
            sub = _clear_files(fd)
            if sub is not None:
                try:
                    child = os.open(sub, flags, dir_fd=fd)
                except PermissionError:  # a folder the child made unreadable (mode 000)
                    os.chmod(sub, 0o700, dir_fd=fd)
                    child = os.open(sub, flags, dir_fd=fd)
                st = os.fstat(child)
                os.close(fd)
                fd = child
                names.append(sub)
                idents.append((st.st_dev, st.st_ino))
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            st = os.fstat(parent)
            os.close(fd)
            fd = parent
            if (st.st_dev, st.st_ino) != idents[-2]:
                return False  # the tree moved under us: stop rather than remove the wrong thing
            idents.pop()
            os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def _clear_files(fd: int) -> str | None:
    """Unlink every non-folder in the folder ``fd``; the name of one sub-folder left, or None."""
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=fd)
    return None


def remove_stale_private_dirs(root: str | None = None, *, legacy_age_s: float = LEGACY_PRIVATE_DIR_AGE_S) -> list[str]:
    """Remove the engine's private folders whose worker process is gone (killed before its
    ``finally`` ran); the paths removed. A folder of a live worker is never touched. Temporary
    folders are per host (per container), so each worker process cleans its own host when it
    starts, and the reaper the host it runs on."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PRIVATE_DIR_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            match = PRIVATE_DIR_RE.match(entry.name)
            if match:
                if _start_ticks(int(match[1])) == int(match[2]):
                    continue  # its worker lives
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime < legacy_age_s:
                continue
        except OSError:
            continue
        remove_tree(entry.path)
        if not os.path.exists(entry.path):
            removed.append(entry.path)
    return removed
