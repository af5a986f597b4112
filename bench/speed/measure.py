"""Measuring on a shared machine: time per call (wall and process CPU), peak memory, the CPU's name."""
import argparse
import gc
import platform
import re
import resource
import statistics
import time

import torch
import torch.nn.functional as F


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, n: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of n calls, the device synchronised around each.

    On a shared CPU the process CPU time (time.process_time, all threads) is the steadier
    figure: it does not count the time other processes hold the cores."""
    wall, cpu = [], []
    for _ in range(n):
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


class PeakMemory:
    """Peak memory increase over a code region: CUDA allocator, or CPU resident set size (bytes)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.how = None

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.how = "torch.cuda.max_memory_allocated - memory_allocated before the train steps"
            return
        release_free_heap()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
            self.base = proc_status_kb("VmRSS") * 1024
            self.how = "peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the train steps"
        except OSError:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.how = "ru_maxrss delta vs after model build (clear_refs unavailable)"

    def stop(self) -> int:
        if self.device.type == "cuda":
            sync(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self.how.startswith("peak RSS"):
            return proc_status_kb("VmHWM") * 1024 - self.base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base


def release_free_heap() -> None:
    """Give freed heap memory (e.g. the checkpoint read while loading) back to the OS (glibc), so
    the train steps cannot reuse it unseen; a no-op where malloc_trim does not exist."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        return platform.processor()


def parse_shape(shape: str) -> tuple[int, int]:
    """'16x128' -> (16, 128): batch size x sequence length."""
    batch_size, seq_len = shape.split("x")
    return int(batch_size), int(seq_len)


def time_rounds(calls: dict, rounds: int, warmup: int, device: torch.device) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and process CPU seconds of every call in each of `rounds` rounds, after `warmup` untimed
    ones: {name: (wall, cpu)}. A round runs each call once, in turn, so that a change in the machine's
    load hits every call alike; compare them with `paired_ratio`."""
    times = {name: ([], []) for name in calls}
    for i in range(warmup + rounds):
        for name, call in calls.items():
            (wall,), (cpu,) = timed(call, 1, device)
            if i >= warmup:
                times[name][0].append(wall)
                times[name][1].append(cpu)
    return times


def paired_ratio(ours: list[float], base: list[float]) -> tuple[float, float]:
    """Two estimates of ours / base from the same rounds: the ratio of the minima (each call's least
    disturbed round) and the median of the per-round ratios (a round's disturbance hits both)."""
    return min(ours) / min(base), statistics.median(o / b for o, b in zip(ours, base))


def inference_times(forward, steps: int, warmup: int, device: torch.device) -> tuple[list[float], list[float]]:
    with torch.no_grad():
        timed(forward, warmup, device)
        return timed(forward, steps, device)


def make_train_step(forward, labels, optimizer):
    """One train step as every benchmark takes it: forward, cross-entropy, backward, AdamW, zero_grad."""
    def train_step():
        F.cross_entropy(forward().float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return train_step


def train_then_infer(model, forward, labels, optimizer, steps: int, warmup: int, device: torch.device,
                     after_training) -> dict:
    """The protocol speed.py and peers.py share: in train mode, warm-up and measured steps (forward,
    cross-entropy, backward, AdamW) under the peak-memory probe; then `after_training()` (the gradient
    check: a backward before the memory measurement would leave its freed activations in the heap,
    and the train steps would reuse them without raising the peak); then inference in eval mode."""
    train_step = make_train_step(forward, labels, optimizer)
    model.train()
    memory = PeakMemory(device)
    memory.start()
    timed(train_step, warmup, device)
    train, train_cpu = timed(train_step, steps, device)
    result = dict(train_peak_bytes=memory.stop(), memory_method=memory.how)
    if device.type == "cuda":
        result["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    result.update(after_training())
    model.eval()
    infer, infer_cpu = inference_times(forward, steps, warmup, device)
    return dict(result, train_s=train, train_cpu_s=train_cpu, infer_s=infer, infer_cpu_s=infer_cpu)


def add_output_options(parser, results_dir) -> None:
    """The options speed.py and peers.py share for their output, and the hidden pair by which a run
    measures each cell in a fresh process of its own (--one CELL --json-out FILE)."""
    parser.add_argument("--out-dir", default=str(results_dir))
    parser.add_argument("--note", default="", help="a remark written into the .md (e.g. why steps were reduced)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one cell in this process
    parser.add_argument("--json-out", help=argparse.SUPPRESS)


def check_args(parser, args) -> None:
    """The options speed.py and peers.py share."""
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
