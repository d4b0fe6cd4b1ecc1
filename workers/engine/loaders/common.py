"""What the format loaders share: an uploaded zip extracted to a private folder, short errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .. import archive


def _extract_if_zip(path: Path) -> tuple[Path, Path | None]:
    """(folder to load from, temporary folder to remove later or None)."""
    if path.is_dir():
        return path, None
    workdir = Path(tempfile.mkdtemp(prefix="audit-model-"))
    try:
        archive.safe_extract(path, workdir)
    except BaseException:
        archive.remove_tree(workdir)
        raise
    return workdir, workdir


def _first_lines(exc: Exception, n: int = 3) -> str:
    return " ".join(str(exc).strip().splitlines()[:n])
