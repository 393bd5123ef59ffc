"""What every results file states about the machine: its CPU and software, and its load."""

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


def load() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``"0.52 / 0.61 / 0.40"``."""
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def load_note(before: str, after: str) -> str:
    """A sentence for the results files: the load averages when the benchmark started and ended."""
    return (f"Load average (1 / 5 / 15 min) when this benchmark started: {before}; when it "
            f"ended: {after}. On a machine of {os.cpu_count()} CPU(s), a load above that count "
            "means other work was competing for the cores: figures are then provisional, "
            "ratios to a floor of the same run less so.")
