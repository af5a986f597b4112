"""Where and in what precision a model runs: --device and --precision."""
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device (a CPU-only "
                           "torch build or no GPU): use --device cpu or --device auto")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (x86 AVX512-BF16 or AMX, Arm BF16): there autocast to bf16 is ~1.5-2x
    faster than fp32 on CPU; without it bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: ask oneDNN
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))


def autocast(device: torch.device, precision: str):
    """The autocast context of a --precision: fp32 (off), bf16 or fp16 (CUDA only)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA device; on CPU use fp32 (or bf16, on a CPU with native bf16)")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ValueError("--precision bf16: this CPU has no native bf16 arithmetic (AVX512-BF16, AMX or Arm "
                         "BF16), so bf16 would be emulated and slower than fp32: use --precision fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
