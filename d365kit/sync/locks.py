"""One writer per mapping and target at a time, on one machine.

A run (``apply``, ``resume``) holds one lock per mapping it writes, keyed by the target (tenant, BC
environment, company, Dataverse org) and the mapping: an exclusive ``flock`` on
``<lock dir>/<sha1 of the key>.lock``, whose content names the holder (run id, pid, host, journal, since).
The operating system drops a lock when its process ends, killed or not, so a dead run never blocks the
next. A second run that needs a held lock waits up to ``wait`` seconds, then refuses with
``SyncLockedError`` naming the run that holds it. Locks are taken all at once, in key order, or not at all.

Where: ``$D365KIT_LOCK_DIR``, else ``$XDG_DATA_HOME/d365kit/locks`` (``~/.local/share/d365kit/locks``),
a 0700 folder of 0600 files, shared by every journal of the user. Scope: one machine (and one user's lock
folder). Runs on several machines are not guarded by this; there the service's own checks remain (every
update's ``If-Match``, client-chosen ids for one plan's creates), and two plans creating the same record on
two machines would make two rows: run the writes of one tenant from one machine (or one shared lock folder
on a local file system; ``flock`` over NFS is not reliable).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from d365kit.errors import SyncLockedError
from d365kit.sync.target import Target
from d365kit.timestamps import now

POLL = 0.2


def lock_dir() -> Path:
    env = os.environ.get("D365KIT_LOCK_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "d365kit" / "locks"


def private_dir(path: Path, own: bool = True) -> None:
    """Create ``path`` as 0700 (missing parents as usual); when ``own`` (a folder of d365kit's own), make an
    existing one 0700 too. A folder the user chose (``/tmp``) is left as it is."""
    created = not path.exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if created or own:
        os.chmod(path, 0o700)


def key_of(target: Target, mapping: str) -> str:
    return "|".join([*target.key, mapping.lower()])


class RunLocks:
    """The locks of one run: ``acquire`` all (waiting up to ``wait`` s) or raise, ``release`` all."""

    def __init__(self, target: Target, mappings: list[str], run_id: str, journal: Path):
        self.target, self.run_id, self.journal = target, run_id, journal
        self.keys = sorted({key_of(target, m): m for m in mappings}.items())
        self.dir = lock_dir()
        self.fds: list[int] = []

    def _path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()}.lock"

    def holder(self, key: str) -> dict[str, Any]:
        try:
            return json.loads(self._path(key).read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _try(self) -> tuple[str, str] | None:
        """Take every lock or none; returns the (key, mapping) that is held by another run."""
        for key, mapping in self.keys:
            fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                self.release()
                return key, mapping
            self.fds.append(fd)
        me = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "journal": str(self.journal),
            "since": now(),
        }
        for fd, (_, mapping) in zip(self.fds, self.keys, strict=True):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({**me, "mapping": mapping}).encode(), 0)
        return None

    def acquire(self, wait: float = 0.0) -> None:
        private_dir(self.dir)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            held = self._try()
            if held is None:
                return
            if time.monotonic() >= deadline:
                h = self.holder(held[0])
                who = (
                    f"run {h.get('run_id')} (pid {h.get('pid')} on {h.get('host')}, since {h.get('since')}, "
                    f"journal {h.get('journal')})"
                    if h.get("run_id")
                    else "another run"
                )
                waited = f" after waiting {wait:g} s" if wait > 0 else ""
                raise SyncLockedError(
                    f"mapping {held[1]} of {self.target} is being written by {who}; one run writes a mapping "
                    f"of a target at a time. Nothing was written{waited}: try again when it has finished, or "
                    "pass wait=<seconds> (--wait) to wait for it"
                )
            time.sleep(POLL)

    def release(self) -> None:
        for fd in self.fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self.fds = []

    def __enter__(self) -> RunLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(target: Target, mapping: str) -> dict[str, Any] | None:
    """The holder of a mapping's lock when a run holds it now, else None (the lock is not taken)."""
    probe = RunLocks(target, [mapping], "", Path())
    path = probe._path(probe.keys[0][0])
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return probe.holder(probe.keys[0][0]) or {"run_id": None}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
