"""Evaluation datasets: recognised from their content and checked before they are
stored, so a bad file is refused at upload, not deep in a worker.

Formats: CSV or JSONL with a text column and a label column (text classification),
NPZ with ``inputs``/``x`` and ``labels``/``y`` arrays (tensors and images), and
plain text (language-model perplexity). No pickles: NPZ is read with
``allow_pickle=False``. Imports numpy only (scikit-learn lazily, for built-ins).

Built-in datasets need no file and no download: ``builtin:digits`` (scikit-learn's 8x8 digits,
1,797 samples of 64 features in [0, 1], 10 classes), ``builtin:iris`` (150 x 4, 3 classes),
``builtin:diabetes`` (442 x 10, regression). ``inspect_dataset`` accepts their names.

In the engine: ``read_dataset(path) -> RawDataset`` (the rows or arrays, label names) and
``check_dataset_for_model(raw, loaded)``, which refuses, before anything is measured, a dataset
that cannot fit the model (wrong shapes, labels out of range, token ids beyond the vocabulary,
text with no tokenizer) with a message saying what to fix."""
import csv
import io
import itertools
import re
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


BUILTIN = {
    "builtin:digits": "scikit-learn digits: 1797 8x8 images flattened to 64 features in [0, 1], 10 classes",
    "builtin:iris": "scikit-learn iris: 150 samples, 4 features, 3 classes",
    "builtin:diabetes": "scikit-learn diabetes: 442 samples, 10 features, regression target",
}


def is_builtin(path) -> bool:
    return str(path) in BUILTIN


def inspect_dataset(path) -> DatasetInfo:
    if is_builtin(path):
        raw = read_dataset(path)
        return DatasetInfo("builtin", raw.n, list(raw.arrays), True, BUILTIN[str(path)])
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
        if _is_workload(next(line for line in text.split("\n") if line.strip())):
            return _inspect_workload(text)
        return _inspect_jsonl(lines)
    if _looks_like_csv(lines[0], text):
        return _inspect_csv(text)
    return DatasetInfo(format="text", n_samples=len(lines), detail=f"{len(lines)} lines of text for perplexity")


def _is_workload(first_line: str) -> bool:
    """A serving workload (workload.py) rather than an evaluation set: its requests name
    ``max_new_tokens``."""
    try:
        row = json.loads(first_line)
    except ValueError:  # JSONDecodeError, or an integer of more digits than Python parses
        return '"max_new_tokens"' in first_line
    return isinstance(row, dict) and "max_new_tokens" in row


def _inspect_workload(text: str) -> DatasetInfo:
    from .serving.workload import WorkloadError, length_statistics, parse_workload

    try:
        requests = parse_workload(text)
    except WorkloadError as exc:
        raise FormatError(f"The serving workload cannot be used: {exc}.") from None
    stats = length_statistics(requests)
    new = stats["max_new_tokens"]
    return DatasetInfo(format="workload", n_samples=len(requests),
                       detail=f"serving workload: {len(requests)} requests, max_new_tokens {new['min']}-{new['max']} "
                              f"(median {new['median']})")


CSV_SNIFF_ROWS = 50


def _looks_like_csv(header: str, text: str = "") -> bool:
    """Whether a text file is a CSV, from its structure rather than its name.

    The first line must be a header of identifier-like names (a line of prose has spaces in its
    fields). Then: one column is a CSV when its name is a text column (``text``, ``sentence``,
    ...); several columns are a CSV when one of them is a text column, or when the rows below
    have as many fields as the header (90% of the first 50; prose with a stray comma does not).
    """
    names = [c.strip() for c in next(csv.reader([header]), [])]
    if not names or not all(re.fullmatch(r"\w[\w-]{0,63}", n) for n in names):
        return False
    lowered = {n.lower() for n in names}
    if len(names) == 1:
        return names[0].lower() in TEXT_COLUMNS
    if lowered & set(TEXT_COLUMNS):
        return True
    rows = [r for r in itertools.islice(csv.reader(io.StringIO(text)), 1, 1 + CSV_SNIFF_ROWS) if r]
    return bool(rows) and sum(len(r) == len(names) for r in rows) >= 0.9 * len(rows)


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
            loaded = {k: data[k] for k in data.files}
    except ValueError as exc:
        raise FormatError(f"The NPZ archive holds object arrays, which are refused: {exc}") from exc
    arrays = {k: v.shape for k, v in loaded.items()}
    inputs, labels = _pick(arrays, NPZ_INPUTS), _pick(arrays, NPZ_LABELS)
    input_names = [inputs] if inputs is not None else [k for k in arrays if k != labels]
    if not input_names:
        raise FormatError(f"NPZ needs an inputs array (one of {', '.join(NPZ_INPUTS)}, or arrays named as the "
                          f"model's inputs); it has {', '.join(arrays)}.")
    first = input_names[0]
    n = arrays[first][0] if arrays[first] else 0
    if n == 0:
        raise FormatError(f"NPZ array '{first}' has no samples.")
    for name in input_names:
        if not arrays[name] or arrays[name][0] != n:
            raise FormatError(f"NPZ input arrays disagree in length: '{first}' has {n} samples, "
                              f"'{name}' {arrays[name]}.")
        _check_npz_values(name, loaded[name])
    if labels is not None:
        if not arrays[labels] or arrays[labels][0] != n:
            raise FormatError(f"NPZ arrays '{first}' ({n} samples) and '{labels}' {arrays[labels]} disagree in length.")
        _check_npz_labels(labels, loaded[labels])
    shapes = ", ".join(f"{k} {list(v)}" for k, v in arrays.items())
    return DatasetInfo("npz", int(n), list(arrays), labels is not None, shapes)


def _check_npz_values(name: str, array) -> None:
    import numpy as np

    if array.dtype.kind not in "fiub":
        raise FormatError(f"NPZ array '{name}' has dtype {array.dtype}; inputs must be numbers.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise FormatError(f"NPZ array '{name}' holds NaN or infinite values.")
    if "ids" in name.lower() and (array.dtype.kind not in "iu" or (array.size and array.min() < 0)):
        raise FormatError(f"NPZ array '{name}' holds token ids: they must be non-negative integers.")


def _check_npz_labels(name: str, array) -> None:
    import numpy as np

    if array.dtype.kind not in "fiub":
        raise FormatError(f"NPZ labels '{name}' have dtype {array.dtype}; labels must be numbers.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise FormatError(f"NPZ labels '{name}' hold NaN or infinite values.")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise FormatError(f"NPZ labels '{name}' hold negative class indices (smallest {int(array.min())}).")


# --- reading for the engine ----------------------------------------------------------------


@dataclass
class RawDataset:
    """A dataset as read: ``kind`` is "arrays" (NPZ / built-in), "text-labels" (CSV / JSONL) or
    "text" (plain text for perplexity). ``labels`` may be None (fidelity only)."""

    kind: str
    source: str
    arrays: dict = field(default_factory=dict)
    texts: list = field(default_factory=list)
    labels: object = None
    task_hint: str = ""  # "classification" / "regression" for built-ins

    @property
    def n(self) -> int:
        if self.kind == "arrays":
            return int(next(iter(self.arrays.values())).shape[0])
        return len(self.texts)


def read_dataset(path) -> RawDataset:
    """Read a dataset file (already passed ``inspect_dataset``) or a built-in name."""
    import numpy as np

    if is_builtin(path):
        return _read_builtin(str(path))
    info = inspect_dataset(path)
    path = Path(path)
    if info.format == "npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        labels_name = _pick(arrays, NPZ_LABELS)
        labels = arrays.pop(labels_name) if labels_name else None
        return RawDataset("arrays", path.name, arrays=arrays, labels=labels)
    text = path.read_text(encoding="utf-8")
    if info.format == "text":
        return RawDataset("text", path.name, texts=[line for line in text.splitlines() if line.strip()])
    if info.format == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    names = list(rows[0])
    text_col, label_col = _pick(names, TEXT_COLUMNS), _pick(names, LABEL_COLUMNS)
    labels = [r.get(label_col) for r in rows] if label_col else None
    return RawDataset("text-labels", path.name, texts=[str(r[text_col]) for r in rows], labels=labels)


def _read_builtin(name: str) -> RawDataset:
    import numpy as np
    from sklearn import datasets as skd

    if name == "builtin:digits":
        d = skd.load_digits()
        x, task = (d.data / 16.0).astype(np.float32), "classification"
    elif name == "builtin:iris":
        d = skd.load_iris()
        x, task = d.data.astype(np.float32), "classification"
    else:
        d = skd.load_diabetes()
        x, task = d.data.astype(np.float32), "regression"
    y = d.target.astype(np.int64 if task == "classification" else np.float32)
    return RawDataset("arrays", name, arrays={"inputs": x}, labels=y, task_hint=task)


def _model_num_classes(loaded) -> int | None:
    config = loaded.config or {}
    if loaded.format == "hf":
        id2label = config.get("id2label") or {}
        return int(config.get("num_labels") or len(id2label) or 0) or None
    if config.get("num_classes"):
        return int(config["num_classes"])
    return None


def _declared_inputs(loaded) -> list[tuple[str, list | None, str]]:
    """(name, per-sample shape or None when dynamic, dtype) of each model input."""
    spec = loaded.input_spec or {}
    kind = spec.get("kind")
    if kind == "tensors":
        return [(i["name"], list(i["shape"]), i.get("dtype", "float32")) for i in spec["inputs"]]
    if kind == "onnx":
        out = []
        for i in spec["inputs"]:
            dims = i["dims"][1:]
            out.append((i["name"], dims if all(isinstance(d, int) for d in dims) else None, i["dtype"]))
        return out
    if kind == "vision":
        size = spec.get("image_size") or 224
        h, w = (size[0], size[-1]) if isinstance(size, (list, tuple)) else (size, size)
        return [(spec.get("input_name") or "pixel_values", [int(spec.get("num_channels") or 3), int(h), int(w)],
                 "float32")]
    if kind == "text":
        return [("input_ids", None, "int64")]
    if kind == "audio-waveform":  # any length of audio
        return [(spec.get("input_name") or "input_values", None, "float32")]
    if kind == "audio-spectrogram":
        return [(spec.get("input_name") or "input_features", [int(d) for d in spec["features_shape"]], "float32")]
    return []


def array_inputs_for_model(raw: RawDataset, loaded) -> dict:
    """The dataset's arrays keyed by the model's input names (a single ``inputs``/``x`` array
    feeds a single-input model); raises FormatError when they do not fit."""
    declared = _declared_inputs(loaded)
    if not declared:
        raise FormatError("the model does not declare its inputs, so an NPZ dataset cannot be matched to them")
    names = [d[0] for d in declared]
    if all(n in raw.arrays for n in names):
        matched = {n: raw.arrays[n] for n in names}
    else:
        generic = _pick(raw.arrays, NPZ_INPUTS)
        required = [d for d in declared if not any(h in d[0].lower() for h in ("mask", "token_type", "position"))]
        if generic is None or len(required) != 1:
            raise FormatError(
                f"the dataset's arrays ({', '.join(raw.arrays)}) do not name the model's inputs "
                f"({', '.join(names)}); name them so in the NPZ"
            )
        matched = {required[0][0]: raw.arrays[generic]}
    for name, shape, dtype in declared:
        if name not in matched:
            continue
        got = list(matched[name].shape[1:])
        if shape is not None and got != [int(d) for d in shape]:
            raise FormatError(f"dataset input '{name}' has per-sample shape {got}; the model expects {shape}")
        if name == "input_ids" or dtype in ("int64", "int32"):
            vocab = (loaded.input_spec or {}).get("vocab_size") or next(
                (i.get("vocab_size") for i in (loaded.input_spec or {}).get("inputs", []) if i["name"] == name), None)
            arr = matched[name]
            if arr.dtype.kind not in "iu":
                raise FormatError(f"dataset input '{name}' must hold integer token ids, not {arr.dtype}")
            if vocab and arr.size and int(arr.max()) >= int(vocab):
                raise FormatError(f"dataset input '{name}' has token id {int(arr.max())}; the model's "
                                  f"vocabulary has {vocab} entries (ids 0..{int(vocab) - 1})")
    return matched


def check_dataset_for_model(raw: RawDataset, loaded, tokenizer=None) -> str:
    """Raise FormatError if ``raw`` cannot evaluate ``loaded``; return the evaluation task:
    "classification", "regression", "lm" or "unlabeled"."""
    import numpy as np

    if raw.kind == "text":
        if tokenizer is None:
            raise FormatError("a plain-text dataset measures perplexity and needs a Hugging Face model "
                              "with its tokenizer files; this model has none")
        if loaded.task != "text-generation":
            raise FormatError(f"a plain-text dataset measures language-model perplexity; this model's task "
                              f"is {loaded.task}. Upload CSV/JSONL with text and label for classification")
        return "lm"
    if raw.kind == "text-labels" and tokenizer is None:
        raise FormatError("a text dataset is tokenised with the model's own tokenizer, and this model has no "
                          "tokenizer files (tokenizer.json / vocab.txt); upload them with the model, or "
                          "upload token ids as an NPZ with an input_ids array")
    if raw.kind == "arrays":
        array_inputs_for_model(raw, loaded)
    if raw.labels is None:
        return "unlabeled"
    num_classes = _model_num_classes(loaded)
    labels = raw.labels
    if raw.kind == "text-labels":
        label2id = {str(k): int(v) for k, v in ((loaded.config or {}).get("label2id") or {}).items()}
        ids = []
        for i, value in enumerate(labels):
            text = str(value).strip()
            if text in label2id:
                ids.append(label2id[text])
            elif re.fullmatch(r"-?\d+", text):
                ids.append(int(text))
            else:
                raise FormatError(f"row {i + 1}: label {text!r} is neither a class index nor one of the model's "
                                  f"labels ({', '.join(label2id) or 'none declared'})")
        labels = np.asarray(ids)
    labels = np.asarray(labels)
    if raw.task_hint == "regression" or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
        return "regression"
    if num_classes is not None and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise FormatError(f"labels range over {low}..{high}, but the model has {num_classes} classes "
                              f"(0..{num_classes - 1})")
    return "classification"
