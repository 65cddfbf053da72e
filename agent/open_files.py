"""The agent's open-file limit: raised at start, and the source of a default in-flight cap.

Every request in flight uses one socket, so one file descriptor, until it ends. An
open-loop plan without max_in_flight keeps starting requests however slow the provider
is, so an overloaded provider could push the agent into EMFILE. The default cap stops
the agent before that: arrivals over it are dropped and counted as
requests_dropped_by_cap, which the self-diagnosis reports.
"""

from __future__ import annotations

import logging
import sys

if sys.platform != "win32":
    import resource

log = logging.getLogger(__name__)

# File descriptors kept free for everything besides provider sockets: the gRPC channel
# to the controller, log files, the OTLP exporter, DNS lookups in worker threads and
# the event loop's own descriptors. An estimate with room to spare, not a measurement.
FD_RESERVE = 256

# Linux refuses a RLIMIT_NOFILE above fs.nr_open (1048576 unless changed) and macOS one
# above OPEN_MAX (10240), so an unlimited hard limit is tried at those values in turn.
_UNLIMITED_HARD_TARGETS = (1_048_576, 10_240)


def raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    Returns None on Windows (no such limit) and when the soft limit is unlimited.
    """
    if sys.platform == "win32":
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        log.debug("open-file limit (RLIMIT_NOFILE) is unlimited")
        return None
    targets = _UNLIMITED_HARD_TARGETS if hard == resource.RLIM_INFINITY else (hard,)
    for target in targets:
        if target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("raising the open-file limit from %d to %d failed: %s", soft, target, exc)
            continue
        log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d", soft, target)
        return target
    log.debug("open-file limit (RLIMIT_NOFILE) stays at %d, hard limit %s", soft, _show(hard))
    return soft


def open_file_limit() -> int | None:
    """Return the soft RLIMIT_NOFILE, or None where there is none or it is unlimited."""
    if sys.platform == "win32":
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def default_in_flight_cap(limit: int, lane_count: int) -> int:
    """Return the in-flight cap per provider lane that keeps the agent within ``limit``.

    (limit - FD_RESERVE) / lane_count, where the reserve shrinks to a quarter of a
    limit below 1024. Never below 1.
    """
    reserve = min(FD_RESERVE, limit // 4)
    return max(1, (limit - reserve) // max(1, lane_count))


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
