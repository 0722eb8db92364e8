"""A job's start-up, timed by stage: how long the process ran before its script's first line,
then each stage the script marks (run.json's ``job_stages_s``; the cost projection counts the
same stages). Imports nothing heavy, so a script can start it before its own imports."""

from __future__ import annotations

import os
import time


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up, and for a Snakemake script
    the preamble that loads the job's ``snakemake`` object), from Linux's /proc; None where
    there is none."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME)
                   - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# In a warm worker process (bnopt.running.workers), which takes one job after another: WARM is
# set, and PENDING_STARTUP holds the worker's own start-up until its first job takes it.
WARM = False
PENDING_STARTUP = 0.0


class Stages:
    """Wall-clock seconds of a job's stages in the order they end: ``interpreter`` (the
    process's age when made; in a warm worker, the worker's start-up for its first job and 0
    for every later one), then each :meth:`done` name, timed from the previous one."""

    def __init__(self):
        global PENDING_STARTUP
        if WARM:
            age, PENDING_STARTUP = PENDING_STARTUP, 0.0
        else:
            age = process_age()
        self.seconds: dict[str, float] = {} if age is None else {"interpreter": age}
        self._last = time.perf_counter()

    def done(self, name: str) -> float:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now
        return self.seconds[name]
