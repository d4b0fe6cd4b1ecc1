"""Accuracy and fidelity of each variant on the audit's dataset.

``prepare_eval_data(dataset, loaded, ...)`` reads the dataset (a file or a ``builtin:`` name),
checks that it fits the model (``datasets.check_dataset_for_model``: refused with a clear message
before anything is measured), tokenises text with the model's own tokenizer and returns an
``EvalData``: the model's inputs as arrays and the labels. ``Evaluator`` computes the reference
(the model as uploaded) outputs once and scores every variant:

- classification: accuracy (primary), top-5 accuracy (more than 5 classes), macro-F1;
- regression: MSE (primary), MAE;
- language modelling (plain text): perplexity (primary), mean NLL per token;
- always, against the reference outputs: fidelity = top-1 agreement, mean cosine similarity of
  the outputs, mean KL divergence KL(reference || variant) of the softmax outputs. Without labels
  the primary metric is the top-1 agreement (mean cosine similarity for one-output models).

Metrics are computed with numpy (no scikit-learn at run time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .datasets import array_inputs_for_model, check_dataset_for_model, read_dataset

DEFAULT_MAX_SAMPLES = 512
DEFAULT_BATCH_SIZE = 32
_CACHE_LIMIT_FLOATS = 16_000_000  # keep reference outputs in memory below ~64 MB, else recompute
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


@dataclass
class EvalData:
    """Inputs keyed by the model's input names (arrays of n samples) and labels (or None)."""

    task: str  # classification | regression | lm | unlabeled
    source: str
    arrays: dict
    labels: np.ndarray | None = None
    notes: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def subset(self, idx) -> "EvalData":
        idx = np.asarray(idx)
        return EvalData(self.task, self.source, {k: v[idx] for k, v in self.arrays.items()},
                        None if self.labels is None else self.labels[idx], list(self.notes))

    def split(self, train_fraction: float = 0.5, seed: int = 0) -> tuple["EvalData", "EvalData"]:
        """(training / calibration part, held-out evaluation part), disjoint, deterministic."""
        order = np.random.default_rng(seed).permutation(self.n)
        cut = max(1, min(self.n - 1, int(round(self.n * train_fraction))))
        return self.subset(np.sort(order[:cut])), self.subset(np.sort(order[cut:]))

    def values_for(self, loaded, idx) -> dict:
        """One batch as the model takes it: torch tensors on its device (cast for half-precision
        variants) or numpy arrays of the graph's dtypes for ONNX; in the model's input order."""
        idx = np.asarray(idx)
        batch = {k: v[idx] for k, v in self.arrays.items()}
        if loaded.kind == "onnx":
            dtypes = {i["name"]: i["dtype"] for i in loaded.input_spec.get("inputs", [])}
            return {k: np.ascontiguousarray(v.astype(dtypes.get(k, v.dtype.name))) for k, v in batch.items()}
        import torch

        values = {k: torch.from_numpy(np.ascontiguousarray(v)).to(loaded.device) for k, v in batch.items()}
        return loaded.cast_inputs(values)


def load_tokenizer(loaded):
    """The model's own tokenizer from its upload folder, or None when it shipped none."""
    folder = getattr(loaded, "source_dir", None)
    if folder is None or not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception:
        return None


def _seq_len(loaded, seq_len: int | None) -> int:
    from .inputs import default_seq_len

    return default_seq_len((loaded.input_spec or {}).get("max_positions"), seq_len)[0]


def prepare_eval_data(dataset, loaded, *, seq_len: int | None = None, max_samples: int = DEFAULT_MAX_SAMPLES,
                      seed: int = 0) -> EvalData:
    """Read ``dataset``, check it against ``loaded`` and build the evaluation inputs.

    Raises FormatError (a user-facing message) when the dataset cannot fit the model.
    """
    raw = read_dataset(dataset)
    tokenizer = load_tokenizer(loaded) if raw.kind in ("text", "text-labels") else None
    task = check_dataset_for_model(raw, loaded, tokenizer)
    notes: list[str] = []
    labels = None
    if raw.kind == "arrays":
        arrays = dict(array_inputs_for_model(raw, loaded))
        for name in _declared_names(loaded):
            if name not in arrays and "mask" in name.lower():
                first = next(iter(arrays.values()))
                arrays[name] = np.ones(first.shape[:2], dtype=np.int64)
        if raw.labels is not None:
            labels = np.asarray(raw.labels)
    elif raw.kind == "text-labels":
        length = _seq_len(loaded, seq_len)
        enc = tokenizer(list(raw.texts), padding="max_length", truncation=True, max_length=length,
                        return_tensors="np")
        arrays = {"input_ids": enc["input_ids"].astype(np.int64),
                  "attention_mask": enc["attention_mask"].astype(np.int64)}
        vocab = (loaded.input_spec or {}).get("vocab_size")
        if vocab and int(arrays["input_ids"].max()) >= int(vocab):
            from .errors import FormatError

            raise FormatError(f"the tokenizer produced token id {int(arrays['input_ids'].max())}, beyond the "
                              f"model's vocabulary of {vocab}: the tokenizer does not belong to this model")
        notes.append(f"tokenised with the model's tokenizer to {length} tokens (padded / truncated)")
        if raw.labels is not None:
            label2id = {str(k): int(v) for k, v in ((loaded.config or {}).get("label2id") or {}).items()}
            labels = np.asarray([label2id[str(v).strip()] if str(v).strip() in label2id else int(str(v).strip())
                                 for v in raw.labels], dtype=np.int64)
    else:  # plain text: perplexity over contiguous blocks
        length = _seq_len(loaded, seq_len)
        ids = tokenizer("\n".join(raw.texts), return_tensors="np")["input_ids"][0].astype(np.int64)
        n_blocks = len(ids) // length
        if n_blocks == 0:
            from .errors import FormatError

            raise FormatError(f"the text has {len(ids)} tokens, fewer than one block of {length}")
        blocks = ids[: n_blocks * length].reshape(n_blocks, length)
        arrays = {"input_ids": blocks, "attention_mask": np.ones_like(blocks)}
        notes.append(f"{len(ids)} tokens in {n_blocks} blocks of {length}")
    if task == "classification" and labels is not None:
        labels = labels.astype(np.int64)
    elif task == "regression" and labels is not None:
        labels = labels.astype(np.float32)
    data = EvalData(task, raw.source, arrays, labels, notes)
    if data.n > max_samples:
        idx = np.sort(np.random.default_rng(seed).permutation(data.n)[:max_samples])
        data = data.subset(idx)
        data.notes.append(f"{max_samples} of {raw.n} samples drawn at random (seed {seed})")
    return data


def _declared_names(loaded) -> list[str]:
    spec = loaded.input_spec or {}
    if spec.get("kind") in ("tensors", "onnx"):
        return [i["name"] for i in spec.get("inputs", [])]
    if spec.get("kind") == "text":
        return ["input_ids", "attention_mask"]
    return []


# --- outputs -------------------------------------------------------------------------------


def _outputs(loaded, values) -> np.ndarray:
    if loaded.kind == "onnx":
        return np.asarray(loaded.forward(values)[0], dtype=np.float32)
    import torch

    from .recipes.common import logits_of

    with torch.inference_mode():
        out = logits_of(loaded.forward(values))
    return out.detach().float().cpu().numpy()


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield np.arange(start, min(n, start + batch_size))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class _Scores:
    """Running sums over batches for every metric."""

    def __init__(self):
        self.correct = self.top5 = self.count = 0
        self.has_top5 = False
        self.preds: list = []
        self.sq = self.abs = 0.0
        self.nll = 0.0
        self.tokens = 0
        self.agree = 0
        self.agree_n = 0
        self.cos_sum = 0.0
        self.cos_n = 0
        self.kl_sum = 0.0
        self.kl_n = 0


def _score_batch(s: _Scores, task: str, out: np.ndarray, ref: np.ndarray, labels, mask) -> None:
    classes = out.shape[-1] if out.ndim > 1 else 1
    if task == "classification" and labels is not None:
        pred = out.argmax(-1)
        s.correct += int((pred == labels).sum())
        s.preds.append(pred)
        if classes > 5:
            s.has_top5 = True
            top = np.argsort(-out, axis=-1)[:, :5]
            s.top5 += int((top == labels[:, None]).any(-1).sum())
        s.count += len(labels)
    elif task == "regression" and labels is not None:
        pred = out.reshape(len(labels), -1)[:, 0]
        s.sq += float(((pred - labels) ** 2).sum())
        s.abs += float(np.abs(pred - labels).sum())
        s.count += len(labels)
    elif task == "lm":
        logp = _log_softmax(out[:, :-1].astype(np.float64))
        target = labels[:, 1:]
        m = mask[:, 1:].astype(bool)
        picked = np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
        s.nll += float(-(picked[m]).sum())
        s.tokens += int(m.sum())
    # fidelity against the reference, per sample (per token for sequence outputs)
    if classes > 1:
        o = out.reshape(-1, classes).astype(np.float64)
        r = ref.reshape(-1, classes).astype(np.float64)
        s.agree += int((o.argmax(-1) == r.argmax(-1)).sum())
        s.agree_n += len(o)
        lr, lo = _log_softmax(r), _log_softmax(o)
        s.kl_sum += float((np.exp(lr) * (lr - lo)).sum())
        s.kl_n += len(o)
    o = out.reshape(out.shape[0], -1).astype(np.float64)
    r = ref.reshape(ref.shape[0], -1).astype(np.float64)
    denom = np.linalg.norm(o, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.where(denom > 0, (o * r).sum(1) / np.where(denom > 0, denom, 1), (o == r).all(1).astype(float))
    s.cos_sum += float(cos.sum())
    s.cos_n += len(cos)


def _macro_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    scores = []
    for c in np.union1d(preds, labels):
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores)) if scores else 0.0


class Evaluator:
    """Scores variants against the dataset and against the reference model's outputs."""

    def __init__(self, reference, data: EvalData, *, batch_size: int = DEFAULT_BATCH_SIZE):
        self.reference = reference
        self.data = data
        self.batch_size = int(batch_size)
        self._cache: list | None = None

    def _reference_outputs(self):
        if self._cache is not None:
            yield from self._cache
            return
        outs = []
        total = 0
        for idx in _batches(self.data.n, self.batch_size):
            out = _outputs(self.reference, self.data.values_for(self.reference, idx))
            total += out.size
            if outs is not None:
                outs.append(out)
                if total > _CACHE_LIMIT_FLOATS:
                    outs = None
            yield out
        self._cache = outs

    def evaluate(self, loaded) -> dict:
        """The evaluation entry of one variant's result (see docs/ENGINE.md, Evaluation)."""
        data = self.data
        s = _Scores()
        labels_all = data.labels
        # the generator first: zip must drain it to the end, where it fills the cache
        for ref, idx in zip(self._reference_outputs(), _batches(data.n, self.batch_size)):
            out = ref if loaded is self.reference else _outputs(loaded, data.values_for(loaded, idx))
            if data.task == "lm":
                labels = data.arrays["input_ids"][idx]
                mask = data.arrays.get("attention_mask", np.ones_like(labels))[idx]
            else:
                labels = None if labels_all is None else labels_all[idx]
                mask = None
            _score_batch(s, data.task, out, ref, labels, mask)
        fidelity = {"mean_cosine_similarity": _r(s.cos_sum / max(s.cos_n, 1))}
        if s.agree_n:
            fidelity["top1_agreement"] = _r(s.agree / s.agree_n)
            fidelity["kl_divergence"] = _r(max(0.0, s.kl_sum / s.kl_n))
        metrics: dict = {}
        if data.task == "classification" and data.labels is not None:
            metrics["accuracy"] = _r(s.correct / max(s.count, 1))
            if s.has_top5:
                metrics["top5_accuracy"] = _r(s.top5 / max(s.count, 1))
            metrics["macro_f1"] = _r(_macro_f1(np.concatenate(s.preds), data.labels))
            primary, higher = "accuracy", True
        elif data.task == "regression" and data.labels is not None:
            metrics["mse"] = _r(s.sq / max(s.count, 1))
            metrics["mae"] = _r(s.abs / max(s.count, 1))
            primary, higher = "mse", False
        elif data.task == "lm":
            nll = s.nll / max(s.tokens, 1)
            metrics["perplexity"] = _r(float(np.exp(nll)))
            metrics["nll_per_token"] = _r(nll)
            primary, higher = "perplexity", False
        else:
            primary = "top1_agreement" if "top1_agreement" in fidelity else "mean_cosine_similarity"
            metrics[primary] = fidelity[primary]
            higher = True
        return {
            "metric": primary,
            "value": metrics[primary],
            "n_samples": int(data.n),
            "fidelity": fidelity,
            "metrics": metrics,
            "higher_is_better": bool(higher),
            "task": data.task,
            "dataset": data.source,
        }


def _r(x: float) -> float:
    return float(round(float(x), 6))
