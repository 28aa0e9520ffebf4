"""Which machine a worker runs on, and whether a process of this machine is alive."""
from __future__ import annotations

import os
import socket


def _host_id() -> str:
    """This machine and boot: a pid recorded before a restart must not be taken for a live one."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{socket.gethostname()}:{f.read().strip()[:8]}"
    except OSError:
        return socket.gethostname()


HOST = _host_id()
NODE = socket.gethostname()  # the machine a run trains on, as the Runs page shows it


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host is alive (a zombie counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
