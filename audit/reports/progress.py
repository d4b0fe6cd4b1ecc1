"""What the live progress partial says: the stage, "variant k of n · batch size b · phase",
the round, an ETA, and the hardware as soon as a worker has claimed the audit.

The worker's runner writes the engine's progress event into `Audit.stage` as
"measuring · variant 2 of 5 · batch 8 · decode · round 1/3" (workers/runner.py,
`stage_text`); audits stored before it have "measuring (1/5)" with a 0-based variant."""
from __future__ import annotations

import re

from ..models import Audit, WorkerNode
from ..selectors import describe_hardware

_LEGACY = re.compile(r"^(?P<name>.*?)\s*\((?P<k>\d+)/(?P<n>\d+)\)\s*$")
_VARIANT = re.compile(r"^variant (?P<k>\d+) of (?P<n>\d+)$")
_BATCH = re.compile(r"^batch (?P<b>\d+)$")
_ROUND = re.compile(r"^round (?P<r>\d+)/(?P<n>\d+)$")
PHASES = ("prefill", "decode", "serving")


def parse_stage(stage: str) -> dict:
    """{"stage", "variant" (1-based), "n_variants", "batch_size", "phase", "round", "n_rounds"}."""
    info = {"stage": "", "variant": None, "n_variants": None, "batch_size": None, "phase": None, "round": None,
            "n_rounds": None}
    stage = (stage or "").strip()
    legacy = _LEGACY.match(stage)
    if legacy and " · " not in stage:
        info["stage"] = legacy.group("name")
        k, n = int(legacy.group("k")), int(legacy.group("n"))
        info["n_variants"] = n
        # Old stages numbered variants from 0; the stages before and after have no variant.
        if info["stage"] in ("counting-flops", "measuring"):
            info["variant"] = min(k + 1, n)
        return info
    parts = [p.strip() for p in stage.split(" · ")]
    info["stage"] = parts[0]
    for part in parts[1:]:
        if m := _VARIANT.match(part):
            info["variant"], info["n_variants"] = int(m.group("k")), int(m.group("n"))
        elif m := _BATCH.match(part):
            info["batch_size"] = int(m.group("b"))
        elif m := _ROUND.match(part):
            info["round"], info["n_rounds"] = int(m.group("r")), int(m.group("n"))
        elif part in PHASES:
            info["phase"] = part
    return info


def running_hardware(audit: Audit) -> str:
    """The hardware the audit runs (or ran) on: the result's fingerprint once stored, else the
    claiming worker's own fingerprint, so the page names the machine from the moment of the claim."""
    if audit.fingerprint:
        return describe_hardware(audit.fingerprint)
    if audit.worker_hostname:
        node = WorkerNode.objects.filter(hostname=audit.worker_hostname).only("fingerprint").first()
        if node is not None and node.fingerprint:
            return describe_hardware(node.fingerprint)
    return "not known until a worker claims the audit" if audit.status == Audit.Status.QUEUED else "unknown hardware"


def progress_info(audit: Audit, *, now=None) -> dict:
    """The parsed stage, a "variant k of n · batch size b · phase" line, and an ETA."""
    from django.utils import timezone  # noqa: PLC0415

    info = parse_stage(audit.stage)
    where = []
    if info["variant"]:
        where.append(f"variant {info['variant']} of {info['n_variants']}")
    if info["batch_size"]:
        where.append(f"batch size {info['batch_size']}")
    if info["phase"]:
        where.append(info["phase"])
    if info["round"]:
        where.append(f"round {info['round']} of {info['n_rounds']}")
    info["where"] = " · ".join(where)
    info["hardware"] = running_hardware(audit) if audit.worker_hostname and not audit.is_finished else ""
    info["eta_s"], info["eta_basis"] = None, ""
    now = now or timezone.now()
    ends = getattr(audit, "measuring_ends_at", None)
    if audit.status == Audit.Status.RUNNING and ends is not None and info["stage"] in ("measuring", "warm-up"):
        # the engine's own estimate, from the windows and warm-ups it has measured
        info["eta_s"], info["eta_basis"] = max(0.0, (ends - now).total_seconds()), "measuring"
    elif audit.status == Audit.Status.RUNNING and audit.started_at and 1.0 <= audit.progress < 100.0:
        elapsed = (now - audit.started_at).total_seconds()
        info["eta_s"] = max(0.0, elapsed * (100.0 - audit.progress) / audit.progress)
    return info
