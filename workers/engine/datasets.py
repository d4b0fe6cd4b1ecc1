"""Evaluation datasets: recognised from their content and checked before they are
stored, so a bad file is refused at upload, not deep in a worker.

Formats: CSV or JSONL with a text column and a label column (text classification),
NPZ with ``inputs``/``x`` and ``labels``/``y`` arrays (tensors and images), and
plain text (language-model perplexity). No pickles: NPZ is read with
``allow_pickle=False``. Imports numpy only."""
import csv
import re
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FormatError

TEXT_COLUMNS = ("text", "sentence", "input", "inputs")
LABEL_COLUMNS = ("label", "labels", "target", "y")
NPZ_INPUTS = ("inputs", "x", "X", "input", "pixel_values", "input_ids")
NPZ_LABELS = ("labels", "y", "label", "target", "targets")
SNIFF_BYTES = 64 * 1024


@dataclass
class DatasetInfo:
    format: str
    n_samples: int
    columns: list[str] = field(default_factory=list)
    has_labels: bool = False
    detail: str = ""


def inspect_dataset(path) -> DatasetInfo:
    path = Path(path)
    if path.stat().st_size == 0:
        raise FormatError("The dataset file is empty.")
    if zipfile.is_zipfile(path):
        return _inspect_npz(path)
    head = path.open("rb").read(SNIFF_BYTES)
    if b"\x00" in head:
        raise FormatError("The dataset is a binary file but not an NPZ archive; upload CSV, JSONL, NPZ or plain text.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError("The dataset is not UTF-8 text; upload CSV, JSONL, NPZ or plain text.") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise FormatError("The dataset has no rows.")
    if lines[0].lstrip().startswith("{"):
        return _inspect_jsonl(lines)
    if _looks_like_csv(lines[0]):
        return _inspect_csv(text)
    return DatasetInfo(format="text", n_samples=len(lines), detail=f"{len(lines)} lines of text for perplexity")


def _looks_like_csv(header: str) -> bool:
    """A header of two or more identifier-like names; a line of prose has spaces in its fields."""
    names = [c.strip() for c in next(csv.reader([header]))]
    return len(names) >= 2 and all(re.fullmatch(r"\w[\w-]{0,63}", n) for n in names)


def _pick(names, wanted) -> str | None:
    for name in names:
        if name.lower() in wanted:
            return name
    return None


def _check_labels(labels: list, source: str) -> None:
    missing = [i for i, v in enumerate(labels) if v in (None, "")]
    if missing:
        raise FormatError(f"{source}: row {missing[0] + 1} has no label.")


def _inspect_csv(text: str) -> DatasetInfo:
    reader = csv.DictReader(io.StringIO(text))
    names = reader.fieldnames or []
    text_col, label_col = _pick(names, TEXT_COLUMNS), _pick(names, LABEL_COLUMNS)
    if text_col is None:
        raise FormatError(f"CSV needs a text column (one of {', '.join(TEXT_COLUMNS)}); it has {', '.join(names)}.")
    rows = list(reader)
    if not rows:
        raise FormatError("The CSV has a header but no rows.")
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise FormatError(f"CSV line {i} does not have {len(names)} columns.")
    if label_col:
        _check_labels([r[label_col] for r in rows], "CSV")
    return DatasetInfo("csv", len(rows), list(names), label_col is not None, f"text column '{text_col}'")


def _inspect_jsonl(lines: list[str]) -> DatasetInfo:
    records = []
    for i, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"JSONL line {i} is not valid JSON: {exc.msg}.") from exc
        if not isinstance(record, dict):
            raise FormatError(f"JSONL line {i} is not an object.")
        records.append(record)
    names = list(records[0])
    text_col, label_col = _pick(names, TEXT_COLUMNS), _pick(names, LABEL_COLUMNS)
    if text_col is None:
        raise FormatError(f"JSONL records need a text field (one of {', '.join(TEXT_COLUMNS)}).")
    for i, record in enumerate(records, start=1):
        if not isinstance(record.get(text_col), str):
            raise FormatError(f"JSONL line {i}: '{text_col}' is missing or not a string.")
    if label_col:
        _check_labels([r.get(label_col) for r in records], "JSONL")
    return DatasetInfo("jsonl", len(records), names, label_col is not None, f"text field '{text_col}'")


def _inspect_npz(path: Path) -> DatasetInfo:
    import numpy as np

    with zipfile.ZipFile(path) as archive:
        members = archive.namelist()
    if not members or not all(m.endswith(".npy") for m in members):
        raise FormatError("A zip dataset must be an NPZ archive (numpy.savez) holding only .npy arrays.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k].shape for k in data.files}
    except ValueError as exc:
        raise FormatError(f"The NPZ archive holds object arrays, which are refused: {exc}") from exc
    inputs, labels = _pick(arrays, NPZ_INPUTS), _pick(arrays, NPZ_LABELS)
    if inputs is None:
        raise FormatError(f"NPZ needs an inputs array (one of {', '.join(NPZ_INPUTS)}); it has {', '.join(arrays)}.")
    n = arrays[inputs][0] if arrays[inputs] else 0
    if n == 0:
        raise FormatError(f"NPZ array '{inputs}' has no samples.")
    if labels is not None and (not arrays[labels] or arrays[labels][0] != n):
        raise FormatError(f"NPZ arrays '{inputs}' ({n} samples) and '{labels}' {arrays[labels]} disagree in length.")
    shapes = ", ".join(f"{k} {list(v)}" for k, v in arrays.items())
    return DatasetInfo("npz", int(n), list(arrays), labels is not None, shapes)
