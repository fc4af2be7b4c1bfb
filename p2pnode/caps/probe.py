"""Hardware probe: CPU and memory through psutil, NVIDIA GPUs through NVML (pynvml).

With no NVIDIA driver (or no GPU) NVML fails to initialise; the probe then reports no GPUs
and says why once, so the node advertises CPU only.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass

import psutil

from p2pnode.caps.model import Gpu

log = logging.getLogger("p2pnode.caps")


@dataclass(frozen=True, slots=True)
class Hardware:
    cores: int
    threads: int
    arch: str
    mem: int
    gpus: tuple[Gpu, ...]
    gpu_note: str = ""  # why no GPU was found, when none was


def probe_gpus() -> tuple[tuple[Gpu, ...], str]:
    """NVIDIA GPUs visible through NVML, or ``((), reason)`` when there are none."""
    try:
        import pynvml
    except ImportError as e:  # nvidia-ml-py is a dependency; be explicit if it is missing
        return (), f"pynvml not importable: {e}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return (), f"NVML unavailable: {e}"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            mem = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
            gpus.append(Gpu(name=str(name)[:64], mem=mem))
        return tuple(gpus), "" if gpus else "NVML found no devices"
    except pynvml.NVMLError as e:
        return (), f"NVML query failed: {e}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def probe(include_gpus: bool = True, quiet: bool = False) -> Hardware:
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    threads = psutil.cpu_count(logical=True) or cores
    gpus: tuple[Gpu, ...] = ()
    note = "GPU probing disabled by config"
    if include_gpus:
        gpus, note = probe_gpus()
        if note and not quiet:
            log.info("no GPU advertised: %s", note)
    return Hardware(
        cores=int(cores),
        threads=int(threads),
        arch=platform.machine() or "unknown",
        mem=int(psutil.virtual_memory().total),
        gpus=gpus,
        gpu_note=note,
    )
