"""kombu's filesystem transport, first in first out: the zero-setup broker of `make run`.

kombu names each message file ``<monotonic milliseconds>_<uuid>.<queue>.msg`` and hands out
the files in the order of their sorted names. The number is not padded, so the order is
lexicographic ("10000000_..." sorts before "9999999_...") and the monotonic clock starts again
at every boot: an audit queued first could run after ones queued minutes later. Here the name
starts with the wall clock in nanoseconds, zero-padded to 20 digits (the sorted names are in
time order until the year 5138), made strictly increasing within a process, and a file only
appears under its final name once its payload is written (written beside it under a name no
queue reads, then renamed), so a consumer never takes a half-written message.

The order is the order of the publishers' clocks: exact for one machine, and as good as the
machines' clock sync when web processes on several machines share the folder.

`workers/celery.py` calls ``register()``, which makes the ``filesystem`` scheme name this transport
in the process (kombu's alias table: Celery takes the broker URL from the environment's
``CELERY_BROKER_URL`` before its own settings, so the URL itself cannot be rewritten); the
folders are the same transport options as kombu's."""
import os
import threading
import time
import uuid

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

NAME_DIGITS = 20
_PARTIAL = ".partial-"  # no queue's files start with a dot: kombu matches "<queue>.msg" after the first dot

_last_ns = 0
_last_lock = threading.Lock()


def _next_ns(clock) -> int:
    """The clock's reading, strictly greater than any this process handed out before."""
    global _last_ns
    with _last_lock:
        now = max(int(clock()), _last_ns + 1)
        _last_ns = now
        return now


def message_name(queue: str, *, clock=time.time_ns) -> str:
    return f"{_next_ns(clock):0{NAME_DIGITS}d}_{uuid.uuid4().hex}.{queue}.msg"


class Channel(filesystem.Channel):
    clock = staticmethod(time.time_ns)

    def _put(self, queue, payload, **kwargs):
        name = message_name(queue, clock=self.clock)
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, _PARTIAL + name)
        try:
            with open(partial, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
    # kombu's filesystem transport keeps its exchange state in one class attribute; this one
    # has its own, so a process that also uses kombu's never mixes the two.
    global_state = filesystem.virtual.BrokerState()
    driver_name = "filesystem-fifo"


def register() -> None:
    """``filesystem://`` names this transport in this process from now on."""
    from kombu.transport import _transport_cache  # noqa: PLC0415

    TRANSPORT_ALIASES["filesystem"] = "workers.fsbroker:Transport"
    _transport_cache.pop("filesystem", None)
