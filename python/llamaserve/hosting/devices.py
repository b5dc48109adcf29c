"""Where models run: the compute backends this build has and the devices they found at run
time, the one line the server logs about them, and what each loaded model holds on which
device (weights, KV cache, compute buffers; llama.cpp's own accounting)."""
from __future__ import annotations

import logging
from typing import Any

from llamaserve.native import compute_backends

log = logging.getLogger("llamaserve.devices")
GPU_TYPES = ("gpu", "igpu")


def gpu_builds() -> list[str]:
    """The GPU backends compiled in (CUDA, Metal, ...), whether or not they found a device."""
    return [b["name"] for b in compute_backends() if b["name"] not in ("CPU", "BLAS")]


def gpu_devices() -> list[dict[str, Any]]:
    return [d for b in compute_backends() for d in b["devices"] if d["type"] in GPU_TYPES]


def device_notice(n_gpu_layers: int) -> str | None:
    """The one line a server logs at start about where its models run, or None when there is
    nothing to say (a CPU build asked for no GPU)."""
    built, found = gpu_builds(), gpu_devices()
    if built and not found:
        return (f"this is a {'/'.join(built)} build, but no {'/'.join(built)} device was found: "
                "models run on the CPU" + (f" (--gpu-layers {n_gpu_layers} has no effect)" if n_gpu_layers else ""))
    if not built and n_gpu_layers:
        return (f"--gpu-layers {n_gpu_layers}: this build has no GPU backend, so models run on the CPU "
                "(build the CUDA wheel: scripts/build_cuda_wheel.sh)")
    if found:
        names = ", ".join(f"{d['name']} ({d['description']}, {d['memory_total'] / 2**30:.1f} GiB)" for d in found)
        return f"GPU devices: {names}" + ("" if n_gpu_layers else "; --gpu-layers 0 keeps models on the CPU")
    return None


def placement(memory_use: list[dict[str, Any]]) -> dict[str, Any]:
    """A model's bytes per device, from the engine's buffers (CUDA0, CUDA_Host, CPU_Mapped, CPU):
    `backend` is the device holding most of its weights."""
    devices: dict[str, dict[str, int]] = {}
    for buffer in memory_use:
        device = buffer["buffer"].split("_")[0]  # CUDA0_Host and CPU_Mapped are host memory of a kind
        if buffer["buffer"].endswith("_Host"):
            device = "CPU"
        bytes_ = devices.setdefault(device, {"weights_bytes": 0, "kv_bytes": 0, "compute_bytes": 0})
        bytes_["weights_bytes"] += buffer["model"]
        bytes_["kv_bytes"] += buffer["context"]
        bytes_["compute_bytes"] += buffer["compute"]
    backend = max(devices, key=lambda d: devices[d]["weights_bytes"], default="CPU")
    return {"backend": backend, "devices": [{"device": name, **b} for name, b in sorted(devices.items())]}
