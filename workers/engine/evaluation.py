"""Accuracy and fidelity of each variant, on the audit's dataset or on generated inputs.

``prepare_eval_data(dataset, loaded, ...)`` reads the dataset (a file or a ``builtin:`` name),
checks that it fits the model (``datasets.check_dataset_for_model``: refused with a clear message
before anything is measured), tokenises text with the model's own tokenizer and returns an
``EvalData``: the model's inputs as arrays and the labels. Without a dataset,
``generated_eval_data(loaded, ...)`` builds the inputs fidelity is measured on: the engine's
built-in English sentences through the model's own tokenizer where it ships one, else several
seeded random batches of the model's declared inputs (``inputs.build_inputs``).

``Evaluator`` computes the reference (the model as uploaded) outputs once and scores every
variant. Labelled metrics, where the dataset has labels:

- classification: accuracy (primary), top-5 accuracy (more than 5 classes), macro-F1;
- regression: MSE (primary), MAE;
- language modelling (plain text): perplexity (primary), mean NLL per token.

Fidelity to the reference, always, by the metric that fits the model: see ``fidelity.py``.

Metrics are computed with numpy and torch (no scikit-learn at run time); large logits are
reduced in chunks so an LM's vocabulary-wide outputs never sit in memory in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .datasets import array_inputs_for_model, check_dataset_for_model, read_dataset
from .fidelity import (
    _SEQUENCE_TASKS,
    EMBEDDING,
    HEADLINE,
    SEQUENCE,
    _fidelity,
    _next_token_nll,
    _r,
    _score_fidelity,
    fidelity_kind,
    model_pooling,
)

DEFAULT_MAX_SAMPLES = 512
DEFAULT_BATCH_SIZE = 32
DEFAULT_FIDELITY_SAMPLES = 32  # generated inputs when there is no dataset
GENERATED_SOURCE = "generated inputs"
_CACHE_LIMIT_FLOATS = 16_000_000  # keep reference outputs in memory below ~64 MB, else recompute
_OUTPUT_LIMIT_FLOATS = 32_000_000  # one evaluation batch's vocabulary-wide logits: at most ~128 MB
_RANDOM_BATCH = 8
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


@dataclass
class EvalData:
    """Inputs keyed by the model's input names (arrays of n samples) and labels (or None)."""

    task: str  # classification | regression | lm | unlabeled
    source: str
    arrays: dict
    labels: np.ndarray | None = None
    notes: list = field(default_factory=list)
    real_text: bool = False  # token ids of real text (a causal LM's perplexity on it means something)

    @property
    def n(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def subset(self, idx) -> "EvalData":
        idx = np.asarray(idx)
        return EvalData(self.task, self.source, {k: v[idx] for k, v in self.arrays.items()},
                        None if self.labels is None else self.labels[idx], list(self.notes), self.real_text)

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
    data = EvalData(task, raw.source, arrays, labels, notes, real_text=raw.kind in ("text", "text-labels"))
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


# --- generated inputs (no dataset) ---------------------------------------------------------


def generated_eval_data(loaded, *, seq_len: int | None = None, overrides: dict | None = None,
                        n_samples: int = DEFAULT_FIDELITY_SAMPLES) -> EvalData:
    """Inputs to measure fidelity on when the audit has no dataset: the built-in sentences
    (``fidelity_texts``) through the model's own tokenizer where a text model ships one, else
    ``n_samples`` inputs from seeded random batches of its declared inputs (the machinery the
    measurements use, ``inputs.build_inputs``, with other seeds). Unlabelled."""
    n = max(3, int(n_samples))
    notes: list[str] = []
    if (loaded.input_spec or {}).get("kind") == "text":
        tokenizer = load_tokenizer(loaded)
        if tokenizer is not None:
            data = _text_eval_data(loaded, tokenizer, seq_len, n, notes)
            if data is not None:
                return data
    return _random_eval_data(loaded, seq_len, dict(overrides or {}), n, notes)


def _text_eval_data(loaded, tokenizer, seq_len, n, notes) -> EvalData | None:
    from .fidelity_texts import SENTENCES

    spec = loaded.input_spec or {}
    length = _seq_len(loaded, seq_len)
    texts = [SENTENCES[i] for i in range(min(n, len(SENTENCES)))]
    try:
        rows = [list(tokenizer(t, truncation=True, max_length=length)["input_ids"]) for t in texts]
    except Exception as exc:
        notes.append(f"the model's tokenizer failed on the built-in sentences ({type(exc).__name__}: {exc})")
        return None
    rows = [r for r in rows if r]
    vocab = spec.get("vocab_size")
    if len(rows) < 3 or (vocab and max(max(r) for r in rows) >= int(vocab)):
        notes.append("the model's tokenizer does not fit its vocabulary; random token ids were used instead")
        return None
    longest = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if isinstance(tokenizer.pad_token_id, int) else 0
    ids = np.full((len(rows), longest), pad, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    arrays = {"input_ids": ids, "attention_mask": mask}
    if spec.get("encoder_decoder"):  # teacher-forced on the same text
        arrays["decoder_input_ids"] = ids.copy()
        arrays["decoder_attention_mask"] = mask.copy()
    notes.append(f"no dataset: fidelity measured on {len(rows)} built-in English sentences tokenised with the "
                 f"model's tokenizer ({int(mask.sum(1).min())}-{longest} tokens, padded to the longest, padding "
                 "masked)")
    return EvalData("unlabeled", GENERATED_SOURCE, arrays, None, notes, real_text=True)


def _random_eval_data(loaded, seq_len, overrides, n, notes) -> EvalData:
    from .inputs import DEFAULT_SEED, build_inputs

    first_seed = int(overrides.get("seed", DEFAULT_SEED)) + 1  # not the measurement's own batch
    n_batches = -(-n // _RANDOM_BATCH)
    parts: dict[str, list] = {}
    for b in range(n_batches):
        built = build_inputs(loaded.input_spec or {}, _RANDOM_BATCH, seq_len=seq_len,
                             overrides=dict(overrides, seed=first_seed + b), device="cpu")
        for name, value in built.values.items():
            parts.setdefault(name, []).append(_to_numpy(value))
    arrays = {name: np.concatenate(chunks)[:n] for name, chunks in parts.items()}
    kind = (loaded.input_spec or {}).get("kind")
    what = {"text": "random token ids", "vision": "random images (standard normal pixels)"}.get(kind, "random inputs")
    if kind == "text" and "attention_mask" in arrays:
        what = _vary_lengths(loaded, arrays, first_seed)
    notes.append(f"no dataset: fidelity measured on {n} {what} of the model's declared input shape, from "
                 f"{n_batches} seeded batches (seeds {first_seed}-{first_seed + n_batches - 1}); a dataset of real "
                 "inputs gives a figure closer to production")
    return EvalData("unlabeled", GENERATED_SOURCE, arrays, None, notes)


def _vary_lengths(loaded, arrays: dict, seed: int) -> str:
    """Give random token sequences lengths from an eighth of the sequence to all of it, the rest
    padding (pad id, masked), as real batches have: mean pooling over many random tokens makes
    every input's embedding nearly the same, and padding must not count."""
    ids, mask = arrays["input_ids"], arrays["attention_mask"]
    n, length = ids.shape
    pad = (loaded.config or {}).get("pad_token_id")
    pad = int(pad) if isinstance(pad, int) and 0 <= pad < int((loaded.input_spec or {}).get("vocab_size") or 0) else 0
    lengths = np.random.default_rng(seed).integers(max(1, length // 8), length + 1, size=n)
    for i, k in enumerate(lengths):
        ids[i, k:] = pad
        mask[i, k:] = 0
        if "decoder_input_ids" in arrays:
            arrays["decoder_input_ids"][i, k:] = pad
    if "decoder_input_ids" in arrays:
        arrays["decoder_attention_mask"] = mask.copy()
    return f"random token sequences of {int(lengths.min())}-{length} tokens (padding masked)"


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    import torch

    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16; the variant casts its inputs again
        value = value.float()
    return value.numpy()


# --- outputs -------------------------------------------------------------------------------


def _outputs(loaded, values):
    """The model's main output for one batch as a float32 CPU tensor."""
    import torch

    if loaded.kind == "onnx":
        return torch.from_numpy(np.ascontiguousarray(np.asarray(loaded.forward(values)[0], dtype=np.float32)))
    from .recipes.common import logits_of

    with torch.inference_mode():
        out = logits_of(loaded.forward(values))
    return out.detach().float().cpu()


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield np.arange(start, min(n, start + batch_size))


def _mask_key(data: EvalData, kind: str) -> str | None:
    if kind == SEQUENCE and "decoder_input_ids" in data.arrays:
        return "decoder_attention_mask" if "decoder_attention_mask" in data.arrays else None
    if "attention_mask" in data.arrays:
        return "attention_mask"
    return next((k for k in data.arrays if "mask" in k.lower() and data.arrays[k].ndim == 2), None)


class _Scores:
    """Running sums over batches for every metric."""

    def __init__(self):
        self.correct = self.top5 = self.count = 0
        self.has_top5 = False
        self.preds: list = []
        self.sq = self.abs = 0.0
        self.nll = 0.0
        self.tokens = 0
        # fidelity
        self.agree = self.rows = 0
        self.kl = 0.0
        self.pooled_out: list = []
        self.pooled_ref: list = []
        self.diff_sq = self.ref_sq = self.diff_abs = 0.0
        self.values = 0
        self.fid_nll = 0.0
        self.fid_tokens = 0


def _score_labels(s: _Scores, task: str, out, labels, ids, mask) -> None:
    if task == "classification" and labels is not None:
        o = out.numpy()
        pred = o.argmax(-1)
        s.correct += int((pred == labels).sum())
        s.preds.append(pred)
        if o.shape[-1] > 5:
            s.has_top5 = True
            top = np.argsort(-o, axis=-1)[:, :5]
            s.top5 += int((top == labels[:, None]).any(-1).sum())
        s.count += len(labels)
    elif task == "regression" and labels is not None:
        pred = out.numpy().reshape(len(labels), -1)[:, 0].astype(np.float64)
        s.sq += float(((pred - labels) ** 2).sum())
        s.abs += float(np.abs(pred - labels).sum())
        s.count += len(labels)
    elif task == "lm":
        nll, tokens = _next_token_nll(out, ids, mask)
        s.nll += nll
        s.tokens += tokens


def _macro_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    scores = []
    for c in np.union1d(preds, labels):
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def eval_batch_size(loaded, data: EvalData, requested: int) -> int:
    """``requested``, smaller for models whose outputs span the vocabulary at every position
    (one batch's logits stay under ``_OUTPUT_LIMIT_FLOATS``)."""
    ids = data.arrays.get("input_ids")
    vocab = (loaded.input_spec or {}).get("vocab_size")
    if ids is None or not vocab or ids.ndim != 2 or loaded.task not in _SEQUENCE_TASKS + ("unknown",):
        return max(1, int(requested))
    return max(1, min(int(requested), _OUTPUT_LIMIT_FLOATS // max(1, ids.shape[1] * int(vocab))))


class Evaluator:
    """Scores variants against the dataset's labels (where it has them) and, always, against the
    reference model's outputs (fidelity)."""

    def __init__(self, reference, data: EvalData, *, batch_size: int = DEFAULT_BATCH_SIZE):
        self.reference = reference
        self.data = data
        self.batch_size = eval_batch_size(reference, data, batch_size)
        self._cache: list | None = None
        self.kind: str | None = None
        self.pooling, self.pooling_source = model_pooling(reference)

    def _reference_outputs(self):
        if self._cache is not None:
            yield from self._cache
            return
        outs = []
        total = 0
        for idx in _batches(self.data.n, self.batch_size):
            out = _outputs(self.reference, self.data.values_for(self.reference, idx))
            total += out.numel()
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
        causal_text = data.real_text and self.reference.task == "text-generation" and data.task != "lm"
        # the generator first: zip must drain it to the end, where it fills the cache
        for ref, idx in zip(self._reference_outputs(), _batches(data.n, self.batch_size)):
            out = ref if loaded is self.reference else _outputs(loaded, data.values_for(loaded, idx))
            if tuple(out.shape) != tuple(ref.shape):
                raise ValueError(f"the variant's output has shape {list(out.shape)}, the baseline's {list(ref.shape)}")
            if self.kind is None:
                self.kind = fidelity_kind(self.reference, ref)
            key = _mask_key(data, self.kind)
            mask = data.arrays[key][idx] if key else None
            ids = data.arrays["input_ids"][idx] if "input_ids" in data.arrays else None
            lm_mask = data.arrays.get("attention_mask", np.ones_like(ids))[idx] if ids is not None else None
            labels = None if labels_all is None else labels_all[idx]
            _score_labels(s, data.task, out, labels, ids, lm_mask)
            _score_fidelity(s, self.kind, out, ref, mask, self.pooling,
                            lm_ids=ids if causal_text and self.kind == SEQUENCE else None)
        fidelity = _fidelity(s, self.kind)
        headline, fid_higher = HEADLINE[self.kind]
        metrics: dict = {}
        primary, higher = None, True
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
        doc = {
            "metric": primary,
            "value": metrics[primary] if primary else None,
            "labelled": primary is not None,
            "n_samples": int(data.n),
            "fidelity": fidelity,
            "fidelity_metric": headline,
            "fidelity_value": fidelity[headline],
            "fidelity_higher_is_better": fid_higher,
            "fidelity_kind": self.kind,
            "metrics": metrics,
            "higher_is_better": bool(higher),
            "task": data.task,
            "dataset": data.source,
        }
        if self.kind == EMBEDDING:
            doc["pooling"] = {"modes": list(self.pooling), "source": self.pooling_source}
        return doc
