"""Zip archives from uploads: check every member before anything is written.

The checks run on the central directory only, so a hostile archive is refused
without a byte of it landing on disk. ``safe_extract`` re-checks while writing,
because a member's declared size is the uploader's claim, not a fact.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .errors import ArchiveError

DEFAULT_MAX_MEMBERS = 10_000
DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3
DEFAULT_MAX_RATIO = 100.0
# Tiny members (config.json full of spaces) compress absurdly well and are harmless.
RATIO_MIN_BYTES = 1024 * 1024

_COPY_CHUNK = 1024 * 1024
# Longer member names are refused: no file system takes a name component over 255 bytes,
# and nothing a model needs comes near 1024 bytes of path.
MAX_NAME_BYTES = 1024
MAX_NAME_COMPONENT_BYTES = 255


def _caps(max_members, max_total_bytes, max_ratio):
    """Explicit arguments win; then AUDIT_ARCHIVE_MAX_* environment settings; then defaults."""

    def pick(value, env, default, cast):
        if value is not None:
            return cast(value)
        if os.environ.get(env):
            return cast(os.environ[env])
        return default

    return (
        pick(max_members, "AUDIT_ARCHIVE_MAX_MEMBERS", DEFAULT_MAX_MEMBERS, int),
        pick(max_total_bytes, "AUDIT_ARCHIVE_MAX_BYTES", DEFAULT_MAX_TOTAL_BYTES, int),
        pick(max_ratio, "AUDIT_ARCHIVE_MAX_RATIO", DEFAULT_MAX_RATIO, float),
    )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def _unsafe_mode_reason(info: zipfile.ZipInfo) -> str | None:
    """A model is regular files in folders. The Unix mode a zip records (high 16 bits of
    external_attr) may also say FIFO, device, socket, or setuid/setgid/sticky: an extractor
    that honours modes (unzip, a future code path of ours) would create those, so they are
    refused rather than silently made regular. A mode of 0 is a zip made without Unix modes."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        names = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                 stat.S_IFSOCK: "a socket"}
        return names.get(kind, f"of unknown file type {kind >> 12:o}")
    special = [name for bit, name in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"),
                                      (stat.S_ISVTX, "sticky")) if mode & bit]
    if special:
        return "marked " + "/".join(special)
    return None


def _unsafe_name_reason(name: str) -> str | None:
    if not name:
        return "an empty member name"
    if "\x00" in name:
        return "a NUL byte in a member name"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return f"an absolute path ({name!r})"
    if ".." in PurePosixPath(normalised).parts:
        return f"a path that climbs out of the folder ({name!r})"
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_NAME_BYTES or any(
        len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_COMPONENT_BYTES for part in normalised.split("/")
    ):
        return f"an overlong member name ({name[:60]!r}..., {len(encoded)} bytes)"
    return None


def _name_key(name: str) -> str:
    """Two members with the same key land on the same file ("a/b", "a\\b", "./a/b", "a/b/")."""
    return str(PurePosixPath(name.replace("\\", "/")))


def check_archive(
    path,
    *,
    max_members: int | None = None,
    max_total_bytes: int | None = None,
    max_ratio: float | None = None,
) -> list[zipfile.ZipInfo]:
    """Raise ArchiveError unless every member of the zip at ``path`` is safe to extract.

    Refused: more than ``max_members`` members, more than ``max_total_bytes`` uncompressed,
    a member (of at least 1 MiB) or the whole archive compressed more than ``max_ratio``:1,
    ``..`` or absolute member paths, symlinks, FIFOs, devices, sockets, setuid/setgid/sticky
    modes, encrypted members.
    Returns the members' ZipInfo list.
    """
    max_members, max_total_bytes, max_ratio = _caps(max_members, max_total_bytes, max_ratio)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"the archive is not a readable zip file ({exc})") from None
    if len(infos) > max_members:
        raise ArchiveError(f"the archive has {len(infos)} members; at most {max_members} are allowed")
    total = 0
    total_compressed = 0
    seen: set[str] = set()
    for info in infos:
        reason = _unsafe_name_reason(info.filename)
        if reason:
            raise ArchiveError(f"the archive is refused: it contains {reason}")
        # A name twice: a reader that takes the first and one that takes the last (Python's
        # zipfile) would see different files, so what was checked need not be what is loaded.
        key = _name_key(info.filename)
        if key in seen:
            raise ArchiveError(f"the archive is refused: member {info.filename!r} appears twice")
        seen.add(key)
        if _is_symlink(info):
            raise ArchiveError(f"the archive is refused: member {info.filename!r} is a symbolic link")
        mode_reason = _unsafe_mode_reason(info)
        if mode_reason:
            raise ArchiveError(
                f"the archive is refused: member {info.filename!r} is {mode_reason}; "
                "a model holds only regular files and folders"
            )
        if info.flag_bits & 0x1:
            raise ArchiveError(f"the archive is refused: member {info.filename!r} is encrypted")
        total += info.file_size
        total_compressed += info.compress_size
        if total > max_total_bytes:
            raise ArchiveError(
                f"the archive expands to more than {max_total_bytes} bytes; that is over the limit"
            )
        if info.file_size >= RATIO_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise ArchiveError(
                f"the archive is refused: member {info.filename!r} is compressed "
                f"{info.file_size / max(info.compress_size, 1):.0f}:1 (limit {max_ratio:.0f}:1), "
                "which looks like a zip bomb"
            )
    if total >= RATIO_MIN_BYTES and total > max_ratio * max(total_compressed, 1):
        raise ArchiveError(
            f"the archive is refused: it is compressed {total / max(total_compressed, 1):.0f}:1 "
            f"(limit {max_ratio:.0f}:1), which looks like a zip bomb"
        )
    return infos


def safe_extract(
    zip_path,
    dest,
    *,
    max_members: int | None = None,
    max_total_bytes: int | None = None,
    max_ratio: float | None = None,
) -> Path:
    """Extract the zip at ``zip_path`` into the folder ``dest`` after ``check_archive`` passes.

    Writes regular files and folders only, never through a symlink, and stops as soon as the
    bytes actually written exceed what the central directory declared. Returns ``dest``.
    """
    infos = check_archive(
        zip_path, max_members=max_members, max_total_bytes=max_total_bytes, max_ratio=max_ratio
    )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in infos:
            target = (root / info.filename.replace("\\", "/")).resolve()
            if target != root and root not in target.parents:
                raise ArchiveError(f"the archive is refused: member {info.filename!r} lands outside its folder")
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_member(zf, info, target)
            except (OSError, zipfile.BadZipFile) as exc:
                raise ArchiveError(f"the archive could not be extracted at {info.filename!r}: {exc}") from None
    return dest


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise ArchiveError(f"the archive is refused: member {info.filename!r} appears twice") from None
    with zf.open(info) as src, os.fdopen(fd, "wb") as out:
        while True:
            chunk = src.read(_COPY_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > info.file_size:
                raise ArchiveError(
                    f"the archive is refused: member {info.filename!r} is larger than it declares"
                )
            out.write(chunk)


def remove_tree(path) -> None:
    """Remove a temporary extraction folder, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)
