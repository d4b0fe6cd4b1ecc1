"""Fidelity of a variant to the reference (the model as uploaded), on any inputs, labelled or not.

Fidelity to the reference, always, by the metric that fits the model (``fidelity_kind``):

- ``embedding`` (feature extraction): cosine similarity of the pooled embeddings (the model's own
  pooling where it declares one, e.g. a sentence-transformers ``1_Pooling/config.json``, else
  mean pooling; padding masked), averaged over the inputs (``embedding_cosine``, the headline),
  its worst input (``embedding_cosine_min``), and nearest-neighbour agreement (``nn_agreement``:
  the share of inputs whose nearest neighbour among the other inputs is the same under the
  variant as under the reference);
- ``classifier`` (one prediction per sample): top-1 agreement (headline) and mean
  KL(reference || variant) of the softmax distributions (``kl_divergence``, nats);
- ``sequence`` (language models, fill-mask, token classification, seq2seq): the same per position,
  padding masked; for a causal LM each position's argmax is its next-token prediction, and on real
  text the variant's ``perplexity`` is reported too;
- ``regression`` (one output per sample or a regression head): ``relative_error``
  = ||variant - reference|| / ||reference|| over every output (headline, lower is better) and
  ``mean_abs_error``.

Metrics are computed with numpy and torch (no scikit-learn at run time); large logits are
reduced in chunks so an LM's vocabulary-wide outputs never sit in memory in float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_CHUNK_FLOATS = 4_000_000  # rows of logits reduced at a time in float64


# --- what fidelity means for this model ----------------------------------------------------

EMBEDDING, CLASSIFIER, SEQUENCE, REGRESSION = "embedding", "classifier", "sequence", "regression"
HEADLINE = {EMBEDDING: ("embedding_cosine", True), CLASSIFIER: ("top1_agreement", True),
            SEQUENCE: ("top1_agreement", True), REGRESSION: ("relative_error", False)}
_EMBEDDING_TASKS = ("feature-extraction", "sentence-similarity", "embedding")
_SEQUENCE_TASKS = ("text-generation", "text2text-generation", "fill-mask", "token-classification")
_CLASSIFIER_TASKS = ("text-classification", "image-classification", "audio-classification", "classification",
                     "question-answering")
_LOGIT_NAMES = ("logit", "score", "prob", "class", "label")
_EMBEDDING_NAMES = ("embed", "hidden", "pool", "feature", "token_embeddings")


def fidelity_kind(loaded, ref) -> str:
    """embedding | classifier | sequence | regression, from the model's task, its config and the
    shape of its main output (``ref``: the reference output of one batch)."""
    task = str(loaded.task or "unknown")
    config = loaded.config or {}
    ndim = ref.dim()
    width = int(ref.shape[-1]) if ndim else 1
    if task in _EMBEDDING_TASKS:
        return EMBEDDING
    if task == "regression" or config.get("problem_type") == "regression" or ndim <= 1 or (ndim == 2 and width == 1):
        return REGRESSION
    if task in _SEQUENCE_TASKS:
        return SEQUENCE if ndim >= 3 else CLASSIFIER
    if task in _CLASSIFIER_TASKS:
        return CLASSIFIER if ndim == 2 else SEQUENCE
    name = _onnx_output_name(loaded).lower()
    if ndim == 2:
        return EMBEDDING if any(h in name for h in _EMBEDDING_NAMES) else CLASSIFIER
    if ndim == 3 and any(h in name for h in _LOGIT_NAMES):
        return SEQUENCE
    return EMBEDDING  # hidden states, feature maps: cosine of the pooled / flattened output


def _onnx_output_name(loaded) -> str:
    if loaded.kind != "onnx":
        return ""
    try:
        return str(loaded.module.get_outputs()[0].name)
    except Exception:
        return ""


_POOLING_KEYS = (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                 ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
                 ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))


def model_pooling(loaded) -> tuple[list[str], str]:
    """(pooling modes, where they come from): a sentence-transformers folder's Pooling module
    (``modules.json`` -> its ``config.json``, or ``1_Pooling/config.json``), else masked mean
    pooling. Several modes are concatenated, as sentence-transformers does. Only JSON is read."""
    folder = getattr(loaded, "source_dir", None)
    if folder is not None:
        for path in _pooling_configs(Path(folder)):
            try:
                config = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            modes = [mode for key, mode in _POOLING_KEYS if isinstance(config, dict) and config.get(key)]
            if modes:
                return modes, f"the model's own pooling ({path.relative_to(folder).as_posix()})"
    return ["mean"], "mean over the tokens, padding masked (the model declares no pooling)"


def _pooling_configs(folder: Path):
    candidates = []
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        modules = []
    for entry in modules if isinstance(modules, list) else []:
        if isinstance(entry, dict) and str(entry.get("type", "")).endswith("Pooling"):
            rel = str(entry.get("path") or "")
            if rel and not rel.startswith("/") and ".." not in Path(rel).parts:
                candidates.append(folder / rel / "config.json")
    candidates.append(folder / "1_Pooling" / "config.json")
    root = folder.resolve()
    return [c for c in candidates if c.is_file() and root in c.resolve().parents]


def pool(hidden, mask, modes) -> "torch.Tensor":  # noqa: F821
    """Pooled embeddings [batch, width x len(modes)] of ``hidden`` [batch, tokens, width] under
    ``mask`` [batch, tokens] (1 = a real token); padding never counts."""
    import torch

    m = mask.to(hidden.dtype).unsqueeze(-1)
    lengths = m.sum(1).clamp(min=1.0)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(m == 0, float("-inf")).amax(1).nan_to_num(0.0, posinf=0.0, neginf=0.0))
        elif mode == "mean_sqrt_len":
            out.append((hidden * m).sum(1) / lengths.sqrt())
        elif mode == "weightedmean":
            w = m * torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype, device=hidden.device).view(1, -1, 1)
            out.append((hidden * w).sum(1) / w.sum(1).clamp(min=1.0))
        elif mode == "lasttoken":
            last = (mask.long().cumsum(1).argmax(1)).clamp(min=0)
            out.append(hidden[torch.arange(hidden.shape[0]), last])
        else:
            out.append((hidden * m).sum(1) / lengths)
    return torch.cat(out, dim=-1)


# --- scoring --------------------------------------------------------------------------------


def _chunks(rows: int, width: int):
    step = max(1, _CHUNK_FLOATS // max(width, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _agreement_and_kl(out, ref) -> tuple[int, float, int]:
    """(rows whose argmax agree, summed KL(ref || out) in nats, rows) over 2-D logits."""
    import torch

    agree, kl = 0, 0.0
    for part in _chunks(out.shape[0], out.shape[-1]):
        o, r = out[part].double(), ref[part].double()
        agree += int((o.argmax(-1) == r.argmax(-1)).sum())
        lr, lo = torch.log_softmax(r, -1), torch.log_softmax(o, -1)
        kl += float((lr.exp() * (lr - lo)).sum())
    return agree, kl, int(out.shape[0])


def _next_token_nll(out, ids, mask) -> tuple[float, int]:
    """(summed negative log-likelihood of each next token, tokens counted) of causal-LM logits."""
    import torch

    logits = out[:, :-1]
    target = torch.as_tensor(ids[:, 1:])
    keep = torch.as_tensor(mask[:, 1:] * mask[:, :-1]).bool()
    rows, targets = logits[keep], target[keep]
    nll = 0.0
    for part in _chunks(rows.shape[0], rows.shape[-1] if rows.dim() == 2 else 1):
        logp = torch.log_softmax(rows[part].double(), -1)
        nll -= float(logp.gather(-1, targets[part].unsqueeze(-1)).sum())
    return nll, int(keep.sum())



def _score_fidelity(s, kind: str, out, ref, mask, pooling, lm_ids=None) -> None:
    # s: the running sums of one evaluation (evaluation._Scores)
    import torch

    if kind == EMBEDDING:
        if out.dim() == 3:
            m = torch.as_tensor(mask) if mask is not None and tuple(mask.shape) == tuple(out.shape[:2]) else None
            m = torch.ones(out.shape[:2]) if m is None else m
            o, r = pool(out, m, pooling), pool(ref, m, pooling)
        else:
            o, r = out.reshape(out.shape[0], -1), ref.reshape(ref.shape[0], -1)
        s.pooled_out.append(o.double().numpy())
        s.pooled_ref.append(r.double().numpy())
    elif kind == REGRESSION:
        o, r = out.reshape(out.shape[0], -1).double(), ref.reshape(ref.shape[0], -1).double()
        s.diff_sq += float(((o - r) ** 2).sum())
        s.ref_sq += float((r ** 2).sum())
        s.diff_abs += float((o - r).abs().sum())
        s.values += int(o.numel())
    elif kind == CLASSIFIER:
        o, r = out.reshape(out.shape[0], -1), ref.reshape(ref.shape[0], -1)
        a, kl, n = _agreement_and_kl(o, r)
        s.agree, s.kl, s.rows = s.agree + a, s.kl + kl, s.rows + n
    else:  # SEQUENCE: every unmasked position
        width = out.shape[-1]
        if mask is not None and tuple(mask.shape) == tuple(out.shape[:2]):
            keep = torch.as_tensor(mask).bool()
            o, r = out[keep], ref[keep]
        else:
            o, r = out.reshape(-1, width), ref.reshape(-1, width)
        a, kl, n = _agreement_and_kl(o, r)
        s.agree, s.kl, s.rows = s.agree + a, s.kl + kl, s.rows + n
        if lm_ids is not None:
            nll, tokens = _next_token_nll(out, lm_ids, mask if mask is not None else np.ones(lm_ids.shape, np.int64))
            s.fid_nll += nll
            s.fid_tokens += tokens


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    denom = na * nb
    both_zero = (na == 0) & (nb == 0)
    return np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1.0), both_zero.astype(float))


def nearest_neighbours(emb: np.ndarray) -> np.ndarray:
    """Index of each row's nearest other row by cosine similarity."""
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norm > 0, norm, 1.0)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def _fidelity(s, kind: str) -> dict:
    if kind == EMBEDDING:
        out, ref = np.concatenate(s.pooled_out), np.concatenate(s.pooled_ref)
        cos = _cosines(out, ref)
        fid = {"embedding_cosine": _r(cos.mean()), "embedding_cosine_min": _r(cos.min())}
        if len(out) >= 3:
            fid["nn_agreement"] = _r(np.mean(nearest_neighbours(out) == nearest_neighbours(ref)))
        return fid
    if kind == REGRESSION:
        ref_norm = np.sqrt(s.ref_sq)
        rel = np.sqrt(s.diff_sq) / ref_norm if ref_norm > 0 else (0.0 if s.diff_sq == 0 else 1.0)
        return {"relative_error": _r(rel), "mean_abs_error": _r(s.diff_abs / max(s.values, 1))}
    fid = {"top1_agreement": _r(s.agree / max(s.rows, 1)), "kl_divergence": _r(max(0.0, s.kl / max(s.rows, 1)))}
    if s.fid_tokens:
        fid["perplexity"] = _r(float(np.exp(s.fid_nll / s.fid_tokens)))
    return fid


def _r(x: float) -> float:
    """Six significant digits (a KL divergence of 3e-7 stays visible)."""
    return float(f"{float(x):.6g}")
