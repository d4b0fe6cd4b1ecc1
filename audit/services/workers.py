"""Worker nodes announce themselves so the audit form offers the hardware that is live."""
from django.utils import timezone

from ..models import WorkerNode


def worker_node_register(*, hostname: str, queue: str, device: str, fingerprint: dict) -> WorkerNode:
    now = timezone.now()
    node, _ = WorkerNode.objects.update_or_create(
        hostname=hostname[:200],
        defaults={"queue": queue, "device": device, "fingerprint": fingerprint, "started_at": now, "last_seen": now},
    )
    return node


def worker_node_heartbeat(*, hostname: str) -> bool:
    return WorkerNode.objects.filter(hostname=hostname).update(last_seen=timezone.now()) == 1


def worker_node_retire(*, hostname: str) -> None:
    WorkerNode.objects.filter(hostname=hostname).delete()
