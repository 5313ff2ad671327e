"""Whether the process that holds a commit lock or owns a staging directory still runs.

Each records its owner (owner_record): the machine (host name and boot), the pid and the
process's start time. On the same machine and boot a dead pid, or a live pid with another start
time (the pid was reused), proves the owner gone. Elsewhere nothing can be proven from the
record: the owner renews a heartbeat (Heartbeat), and one it stopped renewing for longer than
its stated patience shows it gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from datetime import datetime, timezone

LOG = logging.getLogger(__name__)
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot() -> str:
    """This boot of this machine: a pid means nothing across a reboot."""
    try:
        with open(_BOOT_ID) as handle:
            return handle.read().strip()
    except OSError:
        import psutil

        return f"boot-{psutil.boot_time():.0f}"


def _process_started(pid: int) -> float | None:
    """The start time of the process with this pid, or None when there is none."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None  # AccessDenied: not ours to ask, so not one we could have started either


def owner_record() -> dict:
    """Who this process is, as stored in a lock or a staging directory's owner file."""
    return {"host": socket.gethostname(), "boot": _boot(), "pid": os.getpid(),
            "process_started": _process_started(os.getpid())}


def same_machine(owner: dict | None) -> bool:
    return bool(owner) and owner.get("host") == socket.gethostname() and owner.get("boot") == _boot()


def process_gone(owner: dict | None) -> bool:
    """True only when the owner provably no longer runs: recorded on this machine in this boot,
    and its pid is dead or belongs to a process started at another time."""
    if not same_machine(owner) or not isinstance(owner.get("pid"), int):
        return False
    started = _process_started(owner["pid"])
    recorded = owner.get("process_started")
    return started is None or (recorded is not None and abs(started - recorded) > 1.0)


def heartbeat_stale(last_beat: datetime, now: datetime, patience_s: float) -> bool:
    return (now - last_beat).total_seconds() > patience_s


def read_json(storage, path: str) -> dict | None:
    """A small JSON object written by write_json, or None when absent or unreadable."""
    try:
        value = json.loads(storage.read(path).decode("utf-8"))
    except Exception:  # noqa: BLE001 - absent, half-written, not JSON: no usable record
        return None
    return value if isinstance(value, dict) else None


class Heartbeat:
    """Rewrites path with {"beat": now, **fields} every interval_s seconds in a daemon thread,
    until stopped. Its writes never raise: a missed beat only makes the owner look gone sooner.
    while_exists: beat only while path exists (it goes with the directory it is in)."""

    def __init__(self, storage, path: str, fields: dict, interval_s: float, while_exists: bool = False):
        self.storage, self.path, self.fields, self.interval_s = storage, path, fields, interval_s
        self.while_exists = while_exists
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {path}", daemon=True)

    def beat(self) -> None:
        body = {**self.fields, "beat": datetime.now(timezone.utc).isoformat()}
        try:
            if self.while_exists and not self.storage.exists(self.path):
                return
            self.storage.write(self.path, json.dumps(body).encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the run for this
            LOG.debug("heartbeat %s not written: %s", self.path, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        return False
