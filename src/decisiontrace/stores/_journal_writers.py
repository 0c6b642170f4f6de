"""Which process wrote a journal entry, and whether that process is gone.

A pid names a process only while it lives: the kernel hands it out again, and a
container's main process is pid 1 after every restart. So an entry carries, beside
its writer's pid, the writer's *start*: on Linux the boot id
(``/proc/sys/kernel/random/boot_id``) and the process's start time in clock ticks
since boot (``/proc/<pid>/stat``, field 22), which no later process with that pid
shares. Where there is no ``/proc`` the start is a random token drawn once per process:
it still tells this process from an earlier one with its pid, and other pids are
judged by ``kill(pid, 0)`` alone, as before starts were kept.

An entry is an orphan when its writer is gone: the pid is 0 (released at a graceful
shutdown), or it is this process's pid with another start (or none: this process
always writes one), or no process with that pid and start lives (a start from an
earlier boot is gone). Entries written before starts were kept (``start`` None) are
judged by their pid, as then.

A forked child is a new process: :meth:`Writers.me` reads its own pid and start.
"""

from __future__ import annotations

import os
import secrets

#: A start read from ``/proc`` is ``{boot id}/{clock ticks}``; a random token has no "/".
_SEPARATOR = "/"


def process_alive(pid: int) -> bool:
    """Whether some process of this host has pid ``pid`` (``kill(pid, 0)``)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


class Writers:
    """Identities of journal writers on this host, read from ``proc`` (a ``/proc``).

    Args:
        proc: where procfs is mounted; a folder without it (tests use one) gives the
            fallback of platforms without ``/proc``.
    """

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._boot_id: str | None = None
        self._boot_read = False
        self._mine: tuple[int, str] | None = None

    @property
    def _boot(self) -> str | None:
        """This boot's id, read on first use (not at import), or None without /proc."""
        if not self._boot_read:
            path = os.path.join(self._proc, "sys", "kernel", "random", "boot_id")
            self._boot_id, self._boot_read = self._read(path), True
        return self._boot_id

    def me(self) -> tuple[int, str]:
        """This process's ``(pid, start)``, read again after a fork."""
        pid = os.getpid()
        mine = self._mine
        if mine is None or mine[0] != pid:
            start = self.start_of(pid)
            mine = self._mine = (pid, start or "~" + secrets.token_hex(8))
        return mine

    def alive(self, pid: int, start: str | None) -> bool:
        """Whether the process that tagged an entry ``(pid, start)`` may still be alive."""
        if pid <= 0:
            return False
        own_pid, own_start = self.me()
        if pid == own_pid:
            return start == own_start
        own_boot = self._boot
        if start is None or _SEPARATOR not in start or own_boot is None:
            return process_alive(pid)
        boot, _, ticks = start.partition(_SEPARATOR)
        if boot != own_boot:
            return False  # written before this host last booted
        stat = self._stat(pid)
        if stat is None:  # gone, or hidden from us (hidepid): kill(0) tells which
            return process_alive(pid)
        state, actual = stat
        return actual == ticks and state not in ("Z", "X")  # a zombie writes no more

    def start_of(self, pid: int) -> str | None:
        """``{boot id}/{start ticks}`` of process ``pid``, or None if ``/proc`` cannot say."""
        boot = self._boot
        stat = self._stat(pid) if boot is not None else None
        return None if stat is None else f"{boot}{_SEPARATOR}{stat[1]}"

    def _stat(self, pid: int) -> tuple[str, str] | None:
        """Process ``pid``'s state and start ticks (``/proc/<pid>/stat`` fields 3, 22)."""
        line = self._read(os.path.join(self._proc, str(pid), "stat"))
        if line is None:
            return None
        # Field 2, the command name, is in parentheses and may hold spaces or ")".
        fields = line.rpartition(")")[2].split()
        if len(fields) < 20 or not fields[19].isdigit():
            return None
        return fields[0], fields[19]

    @staticmethod
    def _read(path: str) -> str | None:
        try:
            with open(path, encoding="ascii", errors="replace") as file:
                return file.read().strip() or None
        except OSError:
            return None


#: The identities of this process and others, as the SQL stores' journals read them.
WRITERS = Writers()

__all__ = ["WRITERS", "Writers", "process_alive"]
