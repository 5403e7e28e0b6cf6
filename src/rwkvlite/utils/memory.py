"""Peak resident memory of this process, per phase (Linux), without PyTorch.

Peak RSS is the kernel's own high-water mark (VmHWM in /proc/self/status), reset between
phases by writing 5 to /proc/self/clear_refs. Where that is unavailable the peak comes
from getrusage and covers the whole process so far; reset_peak() then returns False.
"""
from __future__ import annotations

import re
import resource
import sys


def rss_kib(field: str = "VmRSS") -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), flags=re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mib() -> float:
    hwm = rss_kib("VmHWM")
    if hwm is None:  # ru_maxrss is KiB on Linux, bytes on macOS
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return hwm / 1024
