"""How many KV cells a model gets: what the operator asked for, or --ctx for every slot,
never silently more than the machine's free memory holds."""
from __future__ import annotations

import logging

from llamaserve.config import ServerConfig
from llamaserve.models.gguf import GGUFInfo

log = logging.getLogger("llamaserve.hosting")

# Bytes per value of each KV cache type (quantized blocks of 32 values with their scales).
_VALUE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32,
                "q4_1": 20 / 32, "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32}
_HEADROOM = 0.8  # of free memory, for the KV cache; compute buffers and the OS need the rest


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo, in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def kv_bytes_per_cell(info: GGUFInfo, config: ServerConfig) -> float:
    per_value = (_VALUE_BYTES[config.cache_type_k] + _VALUE_BYTES[config.cache_type_v]) / 2
    return info.kv_bytes_per_token(1) * per_value


def kv_cells(config: ServerConfig, info: GGUFInfo | None, n_ctx: int, n_parallel: int,
             n_gpu_layers: int) -> int:
    """The n_kv to load with (0: the engine's default of n_ctx per slot). The KV of an
    offloaded model lives on the device, which this does not measure."""
    wanted = config.kv_cells or n_ctx * n_parallel
    free = available_memory()
    per_cell = kv_bytes_per_cell(info, config) if info is not None else 0
    if free is None or per_cell <= 0 or n_gpu_layers != 0:
        return config.kv_cells
    fits = int((free - info.weights_size) * _HEADROOM / per_cell)
    if wanted <= fits:
        return config.kv_cells
    if config.kv_cells:
        log.warning("--kv-cells %d needs %.1f GB of KV cache, more than the %.1f GB free",
                    wanted, wanted * per_cell / 2**30, free / 2**30)
        return config.kv_cells
    cells = max(n_ctx, fits)
    log.warning("KV cache: %d cells (--ctx %d x --parallel %d) would need %.1f GB, more than the "
                "%.1f GB free: using %d cells that the slots share (set --kv-cells to choose)",
                wanted, n_ctx, n_parallel, wanted * per_cell / 2**30, free / 2**30, cells)
    return cells
