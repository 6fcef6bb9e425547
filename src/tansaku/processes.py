"""Is a process still there? Used to reattach to running steps and to take over a dead campaign runner."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def pid_alive_in(pid: int, directory: Path) -> bool:
    """Alive and working in `directory`: a step's job, not another process that got its number after a reboot."""
    if not pid_alive(pid):
        return False
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == Path(directory).resolve()
    except OSError:  # no /proc (not Linux) or not ours to inspect: trust the number
        return True
