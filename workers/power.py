"""Worker-side GPU power-limit control, and the power-limit sweep around engine runs.

The engine child runs as an unprivileged user in a sandbox and cannot change GPU settings,
so the worker does: ``PowerLimitController`` sets the limit between engine runs and
``run_power_sweep`` runs the engine once per limit and merges the result documents.

The restore guarantee: before its first change the controller writes a journal file
(GPU UUID, original limit in mW, pid and the pid's start time) under ``AUDIT_STATE_DIR``;
it puts the original back on exit (context manager, also on an exception) and then removes
the journal. A worker killed in between (SIGKILL, OOM killer) leaves the journal behind,
and ``restore_from_journals()``, called when a worker starts, puts the original back.
No Django here: the runner passes what it needs.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from workers.engine import gpu_state
from workers.engine.frontier import build_frontier, power_limit_steps

log = logging.getLogger(__name__)

ALLOW_ENV = "AUDIT_ALLOW_POWER_LIMIT"
STATE_DIR_ENV = "AUDIT_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/energy-audit"
JOURNAL_PREFIX = "power-limit-"


class PowerLimitRefused(RuntimeError):
    """Power-limit control is not allowed or not possible here; nothing was changed."""


class PowerLimitError(RuntimeError):
    """Setting or restoring the limit failed."""


def state_dir(path=None) -> Path:
    return Path(path or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def allowed(env=None) -> bool:
    return (env if env is not None else os.environ).get(ALLOW_ENV, "").strip() == "1"


def _nvml(nvml):
    if nvml is not None:
        return nvml
    from workers.engine.meters import nvml_module  # noqa: PLC0415

    return nvml_module()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with the
    pid it names one process, even where pids are reused (a container's worker is often pid 1
    every time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _owner_alive(entry: dict) -> bool:
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    start = _proc_start_ticks(pid)
    return start is not None and start == entry.get("pid_start_ticks")


def journal_path(directory: Path, uuid: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in uuid)
    return directory / f"{JOURNAL_PREFIX}{safe}.json"


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _set_and_verify(nvml, handle, mw: int) -> None:
    nvml.nvmlDeviceSetPowerManagementLimit(handle, int(mw))
    now = nvml.nvmlDeviceGetPowerManagementLimit(handle)
    if int(now) != int(mw):
        raise PowerLimitError(f"set the power limit to {mw / 1000:g} W but it reads {now / 1000:g} W")


def restore_from_journals(directory=None, nvml=None) -> list[dict]:
    """Put back every power limit a dead worker left changed, and remove its journal.

    Runs whatever ``AUDIT_ALLOW_POWER_LIMIT`` says now (restoring is undoing). A journal whose
    owner still runs is left alone; one that cannot be restored is kept, so the next start
    tries again. Returns one entry per journal: uuid, original_limit_w, and ``restored`` or
    ``skipped`` / ``error``."""
    directory = state_dir(directory)
    journals = sorted(directory.glob(f"{JOURNAL_PREFIX}*.json")) if directory.is_dir() else []
    if not journals:
        return []
    out = []
    nv = None
    for path in journals:
        try:
            entry = json.loads(path.read_text())
            uuid, mw = str(entry["gpu_uuid"]), int(entry["original_limit_mw"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("unreadable power-limit journal %s: %s", path, exc)
            out.append({"journal": str(path), "error": f"unreadable: {exc}"})
            continue
        item = {"journal": str(path), "gpu_uuid": uuid, "original_limit_w": mw / 1000.0}
        if _owner_alive(entry):
            item["skipped"] = f"its owner (pid {entry['pid']}) still runs"
            out.append(item)
            continue
        try:
            if nv is None:
                nv = _nvml(nvml)
                nv.nvmlInit()
            handle = nv.nvmlDeviceGetHandleByUUID(uuid)
            before = nv.nvmlDeviceGetPowerManagementLimit(handle)
            _set_and_verify(nv, handle, mw)
        except Exception as exc:  # noqa: BLE001 - keep the journal, report, go on with the next
            log.error("could not restore the power limit of %s to %g W: %s", uuid, mw / 1000, exc)
            item["error"] = str(exc) or type(exc).__name__
            out.append(item)
            continue
        path.unlink(missing_ok=True)
        item["restored"] = True
        item["was_w"] = before / 1000.0
        log.warning("restored the power limit of %s from %g W to %g W (journal of pid %s)",
                    uuid, before / 1000, mw / 1000, entry.get("pid"))
        out.append(item)
    if nv is not None:
        try:
            nv.nvmlShutdown()
        except Exception:  # noqa: BLE001 - closing must not hide what was restored
            pass
    return out


class PowerLimitController:
    """Sets one GPU's power limit and always puts the original back.

        with PowerLimitController(uuid) as ctl:   # refuses unless allowed and supported
            ctl.set_limit_w(300)
            ...
        # the original limit is back and the journal removed, also after an exception
    """

    def __init__(self, uuid: str | None = None, *, handle=None, nvml=None, directory=None, env=None):
        if uuid is None and handle is None:
            raise ValueError("a GPU UUID or an NVML handle")
        self.env = env
        self.directory = state_dir(directory)
        self.nvml = None
        self.handle = handle
        self.uuid = uuid
        self._given_nvml = nvml
        self.original_mw: int | None = None
        self.min_w = self.max_w = self.default_w = None
        self.journal: Path | None = None
        self._changed = False

    # -- checks
    def open(self) -> "PowerLimitController":
        """Check that control is allowed and supported and read the limits; changes nothing."""
        if not allowed(self.env):
            raise PowerLimitRefused(
                f"power-limit control is off on this worker: set {ALLOW_ENV}=1 in the worker's environment "
                "(the worker process, not the engine child, needs root or CAP_SYS_ADMIN to change it)")
        try:
            nv = _nvml(self._given_nvml)
            nv.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError, OSError
            raise PowerLimitRefused(f"power-limit control needs NVML, which is unavailable: {exc}") from exc
        self.nvml = nv
        try:
            if self.handle is None:
                self.handle = nv.nvmlDeviceGetHandleByUUID(self.uuid)
            if self.uuid is None:
                self.uuid = _text(nv.nvmlDeviceGetUUID(self.handle))
            is_mig = False
            try:
                is_mig = bool(nv.nvmlDeviceIsMigDeviceHandle(self.handle))
            except (nv.NVMLError, AttributeError):
                pass
            if is_mig:
                raise PowerLimitRefused("a MIG slice has no power limit of its own: the limit is the whole GPU's, "
                                        "shared with the other slices' users")
            lo, hi = nv.nvmlDeviceGetPowerManagementLimitConstraints(self.handle)
            default = nv.nvmlDeviceGetPowerManagementDefaultLimit(self.handle)
            self.original_mw = int(nv.nvmlDeviceGetPowerManagementLimit(self.handle))
        except PowerLimitRefused:
            raise
        except (nv.NVMLError, AttributeError) as exc:
            raise PowerLimitRefused(f"this GPU does not support power-limit control through NVML: {exc}") from exc
        self.min_w, self.max_w, self.default_w = lo / 1000.0, hi / 1000.0, default / 1000.0
        return self

    def steps(self, n: int = 4) -> list[float]:
        """``power_limit_steps`` between this GPU's minimum and default limits."""
        return power_limit_steps(self.min_w, self.default_w, n)

    # -- changes
    def _write_journal(self) -> None:
        directory = self.directory
        path = journal_path(directory, self.uuid)
        if path.exists():
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                other = {}
            if _owner_alive(other) and other.get("pid") != os.getpid():
                raise PowerLimitRefused(f"process {other['pid']} is changing this GPU's power limit ({path})")
            # a dead worker's journal: its original is the real one; put it back first
            restore_from_journals(directory, self.nvml)
            if path.exists():
                raise PowerLimitError(f"a previous worker left {path} and its limit could not be restored")
            self.original_mw = int(self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle))
        try:
            _write_json_atomic(path, {
                "gpu_uuid": self.uuid, "original_limit_mw": self.original_mw, "pid": os.getpid(),
                "pid_start_ticks": _proc_start_ticks(os.getpid()), "hostname": socket.gethostname(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
        except OSError as exc:
            raise PowerLimitRefused(f"cannot write the restore journal in {directory} ({exc}): without it a killed "
                                    f"worker could leave the limit changed; point {STATE_DIR_ENV} at a writable, "
                                    "persistent folder") from exc
        self.journal = path

    def set_limit_w(self, watts: float) -> float:
        """Set the limit (W, within the GPU's constraints); returns the limit now in force."""
        if self.nvml is None:
            self.open()
        if not (self.min_w - 1e-9 <= float(watts) <= self.max_w + 1e-9):
            raise PowerLimitRefused(f"{watts:g} W is outside this GPU's power-limit range "
                                    f"{self.min_w:g}-{self.max_w:g} W")
        mw = int(round(float(watts) * 1000))
        if self.journal is None:
            self._write_journal()
        self._changed = True
        try:
            _set_and_verify(self.nvml, self.handle, mw)
        except self.nvml.NVMLError as exc:
            no_permission = getattr(self.nvml, "NVMLError_NoPermission", None)
            if no_permission is not None and isinstance(exc, no_permission):
                self._drop_journal_if_unchanged()
                raise PowerLimitRefused(
                    "the worker may not change the power limit (NVML: insufficient permissions); run the GPU "
                    "worker as root or with CAP_SYS_ADMIN, or unset " + ALLOW_ENV) from exc
            raise PowerLimitError(f"could not set the power limit to {watts:g} W: {exc}") from exc
        return mw / 1000.0

    def current_limit_w(self) -> float:
        return self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle) / 1000.0

    def _drop_journal_if_unchanged(self) -> None:
        try:
            unchanged = int(self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle)) == self.original_mw
        except self.nvml.NVMLError:
            unchanged = False
        if unchanged and self.journal is not None:
            self.journal.unlink(missing_ok=True)
            self.journal = None
            self._changed = False

    def restore(self) -> None:
        """Put the original limit back and remove the journal. If that fails the journal stays
        (the next worker start retries) and PowerLimitError is raised."""
        if not self._changed or self.original_mw is None:
            return
        try:
            _set_and_verify(self.nvml, self.handle, self.original_mw)
        except Exception as exc:  # noqa: BLE001
            raise PowerLimitError(f"could not restore the power limit of {self.uuid} to "
                                  f"{self.original_mw / 1000:g} W ({exc}); the journal {self.journal} is kept "
                                  "and the worker's next start retries") from exc
        self._changed = False
        if self.journal is not None:
            self.journal.unlink(missing_ok=True)
            self.journal = None

    def __enter__(self) -> "PowerLimitController":
        if self.nvml is None:
            self.open()
        return self

    def close(self) -> None:
        """Release NVML (reference-counted by the driver library); the limit is left as it is."""
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self.nvml = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.restore()
        except PowerLimitError:
            if exc_type is None:
                raise
            log.exception("power limit not restored (while handling %s)", exc_type.__name__)
        finally:
            if not self._changed:  # keep NVML only while a restore is still owed
                self.close()


# --------------------------------------------------------------------------- the sweep


def _tag(measurements: list[dict], limit_w: float, run_state: dict | None) -> list[dict]:
    out = []
    for m in measurements or []:
        m = dict(m)
        m["power_limit_w"] = limit_w
        if run_state is not None:
            # the device state the worker saw over the whole run (loading and idle included);
            # the per-window state of the measurement itself comes from the engine (timing)
            m["run_gpu_state"] = run_state
            if run_state.get("power_limits_seen_w") and run_state["power_limits_seen_w"] != [limit_w]:
                m["flags"] = list(m.get("flags") or []) + ["power-limit-changed-during-run"]
        out.append(m)
    return out


def merge_sweep(runs: list[tuple[float, dict, dict | None]], options: dict | None = None,
                *, original_limit_w: float | None = None) -> dict:
    """One document from one result per power limit. The first run's document is the base:
    its ``measurements`` (tagged with ``power_limit_w``) are the ones its comparisons, trade-off
    and grades rest on; the other limits' measurements go to ``variants[].sweep_measurements``;
    ``frontier`` covers them all; ``power_sweep`` says what ran."""
    if not runs:
        raise ValueError("no runs to merge")
    first_limit, base, first_state = runs[0]
    doc = dict(base)
    by_recipe = {}
    variants = []
    for v in base.get("variants", []):
        v = dict(v)
        v["measurements"] = _tag(v.get("measurements"), first_limit, first_state)
        v["sweep_measurements"] = []
        variants.append(v)
        by_recipe[v.get("recipe")] = v
    warnings = list(base.get("warnings") or [])
    for limit_w, other, state in runs[1:]:
        for ov in other.get("variants", []):
            target = by_recipe.get(ov.get("recipe"))
            if target is None:
                continue
            if ov.get("status") != "succeeded":
                warnings.append(f"{ov.get('recipe')} at {limit_w:g} W: {ov.get('status')} ({ov.get('error') or ''})")
                continue
            target["sweep_measurements"] += _tag(ov.get("measurements"), limit_w, state)
    doc["variants"] = variants
    doc["warnings"] = warnings
    doc["power_sweep"] = {
        "steps_w": [r[0] for r in runs], "original_limit_w": original_limit_w,
        "runs": [{"power_limit_w": r[0], "device_state": r[2]} for r in runs],
    }
    doc["frontier"] = build_frontier(doc, options or (base.get("options") or {}))
    return doc


def run_power_sweep(request: dict, run_engine_fn, controller: PowerLimitController, steps: list[float] | None = None,
                    *, watch_interval_s: float = 1.0) -> dict:
    """Run ``run_engine_fn(request)`` once per power limit in ``steps`` (default: the
    controller's ``steps(options["power_limit_steps"] or 4)``), then restore the original limit
    (also when a run fails: the failure goes up after the restore) and merge the documents.
    The worker watches the device state (clocks, temperature, throttle reasons) during each run."""
    options = request.get("options") or {}
    with controller:
        if steps is None:
            steps = controller.steps(int(options.get("power_limit_steps") or 4))
        original_w = controller.original_mw / 1000.0
        runs = []
        for i, limit in enumerate(steps):
            set_w = controller.set_limit_w(limit)
            watch = gpu_state.StateWatch(controller.handle, controller.nvml, watch_interval_s).start()
            try:
                # sweep_step lets the caller place this run's progress within the whole sweep
                doc = run_engine_fn(dict(request, sweep_step=[i, len(steps)]))
            finally:
                state = watch.stop()
            runs.append((set_w, doc, state))
    merged = merge_sweep(runs, options, original_limit_w=original_w)
    merged["power_sweep"]["restored"] = True
    return merged


def sweep_or_run(request: dict, run_once, *, directory=None, env=None, nvml=None) -> dict:
    """The runner's one call: ``run_once(request)`` as always, or, when the request's options ask
    for ``power_limit_sweep`` on a CUDA device and this worker allows it, ``run_power_sweep``
    over the GPU the request names. When the sweep is asked for but refused (not allowed, not
    supported), the audit still runs once at the limit as found, and the document says why
    (``warnings`` and ``power_sweep.refused``)."""
    options = request.get("options") or {}
    if not options.get("power_limit_sweep"):
        return run_once(request)
    device = str(request.get("device") or "cpu")
    refused = None
    controller = None
    if not device.startswith("cuda"):
        refused = f"a power-limit sweep needs a GPU; this audit runs on {device}"
    elif not allowed(env):
        refused = f"power-limit control is off on this worker ({ALLOW_ENV} is not 1)"
    else:
        try:
            from workers.engine.meters import MeterError, resolve_nvml_handle  # noqa: PLC0415

            nv = _nvml(nvml)
            nv.nvmlInit()
            try:
                _handle, uuid = resolve_nvml_handle(nv, device, options)
            finally:
                nv.nvmlShutdown()
            controller = PowerLimitController(uuid, nvml=nvml, directory=directory, env=env).open()
        except PowerLimitRefused as exc:
            refused = str(exc)
        except (MeterError, ImportError, OSError) as exc:
            refused = f"the GPU could not be found through NVML: {exc}"
        except Exception as exc:  # noqa: BLE001 - an NVMLError from init or the lookup
            refused = f"NVML failed: {exc}"
    if refused is not None:
        doc = run_once(request)
        doc.setdefault("warnings", []).append(f"power-limit sweep not run: {refused}")
        doc["power_sweep"] = {"refused": refused}
        return doc
    try:
        return run_power_sweep(request, run_once, controller)
    finally:
        controller.close()
