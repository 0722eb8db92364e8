"""Give each concurrent training job its own GPU.

Snakemake counts GPUs (``resources: gpu=1`` against ``--resources gpu=N``) but does not say
*which* GPU a job should use (snakemake issue 281). So a job leases one: it takes an exclusive
``flock`` on ``{lock_dir}/gpu-{id}.lock`` for the first free device among those visible to it,
and keeps the file open for the life of the process. The kernel drops the lock when the process
ends, however it ends (SIGKILL included), so a crashed job never strands a GPU. With ``slots``
> 1 (config ``jobs_per_gpu``) each device has that many locks (``gpu-{id}.lock``,
``gpu-{id}.1.lock``, ...), taken slot by slot across the devices, so jobs spread over the GPUs
before any two share one.

Visible devices honour an existing ``CUDA_VISIBLE_DEVICES``: its entries (indices or UUIDs) name
the lock files, and the job uses ``cuda:<position>`` within that list. Nothing rewrites the
environment, so the lease works even after CUDA has been initialised.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

_HELD: list = []  # open lock files of this process's leases: held until the process exits


@dataclass
class Lease:
    index: int        # position among the visible devices: use torch.device(f"cuda:{index}")
    device_id: str    # the physical id (CUDA_VISIBLE_DEVICES entry, or the index)
    lock_path: Path
    _file: object = None

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    def release(self) -> None:
        if self._file is not None:
            _HELD.remove(self._file)
            self._file.close()  # closing the descriptor drops the flock
            self._file = None


def visible_devices(env=None, count: int | None = None) -> list[str]:
    """Physical ids of the GPUs this process may use, in CUDA's order."""
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [d.strip() for d in cvd.split(",") if d.strip()]
    if count is None:

        count = torch.cuda.device_count()
    return [str(i) for i in range(count)]


def _try_lock(path: Path):
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def lease_gpu(lock_dir: str | os.PathLike, devices: list[str] | None = None,
              timeout_s: float = 600.0, poll_s: float = 1.0, slots: int = 1) -> Lease:
    """Lease the first free device of ``devices`` (default: :func:`visible_devices`), each
    shared by at most ``slots`` jobs, waiting up to ``timeout_s`` for one to free up. The lease
    lasts until the process exits."""
    devices = visible_devices() if devices is None else devices
    if not devices:
        raise RuntimeError("no GPU is visible to this job (CUDA_VISIBLE_DEVICES is empty or no "
                           "device found); use device: cpu, or check the job's GPU allocation")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline, last_note = time.monotonic() + timeout_s, 0.0
    while True:
        for slot in range(slots):
            for index, dev in enumerate(devices):
                name = re.sub(r'[^A-Za-z0-9_.-]', '_', dev) + (f".{slot}" if slot else "")
                path = lock_dir / f"gpu-{name}.lock"
                f = _try_lock(path)
                if f is not None:
                    _HELD.append(f)
                    return Lease(index, dev, path, f)
        now = time.monotonic()
        if now >= deadline:
            raise RuntimeError(
                f"all {len(devices)} visible GPUs ({', '.join(devices)}) stayed leased by "
                f"{slots} other job{'s' if slots > 1 else ''} each for {timeout_s:.0f} s (locks "
                f"in {lock_dir}). Run snakemake with --resources gpu=N where N is at most the "
                f"number of GPUs times jobs_per_gpu ({slots}).")
        if now - last_note > 60:
            print(f"waiting for a free GPU among {', '.join(devices)}...", file=sys.stderr,
                  flush=True)
            last_note = now
        time.sleep(poll_s)


def mps_active(env=None) -> bool:
    """Whether a CUDA MPS control daemon serves this process's GPUs: its pipe folder
    (``CUDA_MPS_PIPE_DIRECTORY``, default /tmp/nvidia-mps) holds the daemon's ``control`` pipe."""
    env = os.environ if env is None else env
    return (Path(env.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")) / "control").exists()


def sharing_note(slots: int, env=None) -> str | None:
    """What a job that may share its GPU (``jobs_per_gpu`` = ``slots`` > 1) should say when no
    MPS daemon runs: the jobs' CUDA contexts then take turns on the GPU, so sharing adds no
    throughput (BENCHMARKS.md, "Several jobs on one GPU")."""
    if slots <= 1 or mps_active(env):
        return None
    return (f"jobs_per_gpu = {slots} but CUDA MPS is not running: jobs sharing a GPU take turns "
            "(time-slicing), so together they train no faster than one at a time. Start MPS "
            "(docs/speed.md, 'Several jobs per GPU') or set jobs_per_gpu: 1.")
