"""One line describing the machine and the software a benchmark ran on."""

import os
import platform
import sqlite3


def describe() -> str:
    """CPU model, core count, OS, and the versions of Python, Twisted and SQLite."""
    import twisted

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, Twisted {twisted.__version__}, "
            f"SQLite {sqlite3.sqlite_version}")
