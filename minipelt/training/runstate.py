"""A run's files and resumable state, so an interrupted run continues and a finished one is never lost.

In a run's output directory:
    results.json        written once, at the end (atomic)
    best.safetensors    trainable parameters of the best dev evaluation so far (atomic)
    state.safetensors   everything needed to resume, rewritten every --save-every steps and after
                        every epoch (atomic): trainable parameters, AdamW moments, scheduler, fp16
                        gradient scaler, every process's RNG (its dropout masks), the number of
                        processes, counters, the dev evaluations' history, options

Re-running the same command resumes from state.safetensors; a finished run is not redone; a
run with other options in the directory is refused unless --overwrite. No pickle: tensors go
to safetensors, the rest to JSON in its metadata.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from minipelt.training.checkpoint import atomic_write

RESULTS_FILE, BEST_FILE, STATE_FILE = "results.json", "best.safetensors", "state.safetensors"
NOT_COMPARED = ("device", "output_dir", "save_every")  # options that may change between a run and its resume


@dataclass
class RunState:
    epoch: int = 0  # epochs finished
    step: int = 0
    best_score: float = float("-inf")
    best_metrics: dict = field(default_factory=dict)
    best_step: int = 0
    bad_evaluations: int = 0  # evaluations since the last improvement
    stopped: bool = False  # early stopping triggered
    history: list = field(default_factory=list)  # one history_entry per dev evaluation, in step order

    def record(self, score: float, metrics: dict) -> bool:
        """Count a dev evaluation; True if it is the best so far (then it is kept as the best)."""
        if score > self.best_score:
            self.best_score, self.best_metrics, self.best_step, self.bad_evaluations = score, metrics, self.step, 0
            return True
        self.bad_evaluations += 1
        return False


def json_safe(value):
    """`value` with every NaN or infinite float replaced by None: strict JSON (json.dumps(allow_nan=False))."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def history_entry(step: int, dev: dict, gates: dict, prefix_share: list | None) -> dict:
    """One dev evaluation for results.json's "history": its step, dev metrics, each gate kind's mean
    per layer ({kind: [layer 0, 1, ...]}, from predict's {"layer.kind": mean}) and the prefix's
    share of the attention mass per layer (None without a prefix). Floats to 6 places, never NaN."""
    by_kind: dict[str, dict[int, float]] = {}
    for key, value in gates.items():
        layer, kind = key.split(".", 1)
        by_kind.setdefault(kind, {})[int(layer)] = value
    return json_safe({"step": step, "dev": {name: round(float(v), 6) for name, v in dev.items()},
                      "gates": {kind: [v for _, v in sorted(layers.items())] for kind, layers in by_kind.items()},
                      "prefix_share": prefix_share})


TRAIN_FIX = "pass --overwrite to start this run over, or use another --output-dir"


def damaged(path: Path, error: Exception | str, fix: str = TRAIN_FIX) -> ValueError:
    return ValueError(f"{path} is damaged or not written by train.py ({error}): {fix}")


def read_results(path: Path, fix: str = TRAIN_FIX) -> dict:
    """A finished run's results.json; refused, naming the file, if it is not one."""
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise damaged(path, e, fix) from e
    if not isinstance(results, dict) or not {"options", "task", "method"} <= results.keys():
        raise damaged(path, 'no "options", "task" or "method"', fix)
    return results


def state_metadata(path: Path) -> dict[str, str]:
    """The JSON metadata of a resume state; refused, naming the file, if it is truncated or damaged."""
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata()
    except (SafetensorError, OSError) as e:
        raise damaged(path, e) from e


def previous_options(out: Path) -> dict | None:
    """The options of the run already in `out` (finished or interrupted), if any."""
    if (out / RESULTS_FILE).exists():
        return read_results(out / RESULTS_FILE)["options"]
    if (out / STATE_FILE).exists():
        return json.loads(state_metadata(out / STATE_FILE)["run"])
    return None


def previous_run(out: Path, run, overwrite: bool) -> dict | None:
    """Check what `out` holds against `run`, touching nothing; returns the results if this very run
    already finished there (and not `overwrite`)."""
    previous = previous_options(out)
    if previous is None or overwrite:
        return None
    options = dataclasses.asdict(run)
    # An option newer than the recorded run is compared as its default: the behaviour the run had.
    defaults = {f.name: f.default for f in dataclasses.fields(run)}
    if changed := sorted(k for k in options if k not in NOT_COMPARED and previous.get(k, defaults[k]) != options[k]):
        raise FileExistsError(f"{out} holds a run with other options ({', '.join(changed)}): use another "
                              f"--output-dir, or --overwrite to replace it")
    return read_results(out / RESULTS_FILE) if (out / RESULTS_FILE).exists() else None


def start_output_dir(out: Path, overwrite: bool) -> None:
    """Make `out` ready for the run about to start: with `overwrite` the run it held goes now, once
    every check of the new one has passed, not before."""
    if overwrite:
        for name in (RESULTS_FILE, BEST_FILE, STATE_FILE):
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to the output directory {out} ({e}): choose a writable "
                              f"--output-dir") from e


def rng_state() -> dict[str, torch.Tensor]:
    """This process's random number generators, which draw its dropout masks."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save(out: Path, run, state: RunState, model, optimizer, scheduler, scaler, rng_states: list[dict]) -> None:
    """rng_states: every process's rng_state(), in rank order."""
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    optim = optimizer.state_dict()
    for index, moments in optim["state"].items():
        for name, value in moments.items():
            tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
    for rank, generators in enumerate(rng_states):
        tensors.update({f"rng.{rank}.{device}": value for device, value in generators.items()})
    metadata = {
        "state": json.dumps(dataclasses.asdict(state)),
        "param_groups": json.dumps(optim["param_groups"]),
        "scheduler": json.dumps(scheduler.state_dict()),
        "scaler": json.dumps(scaler.state_dict()),  # {} unless fp16
        "run": json.dumps(dataclasses.asdict(run)),
        "world_size": str(len(rng_states)),
    }
    atomic_write(out / STATE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata))


def saved_world_size(metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> int:
    """The number of processes that wrote a state (before it was recorded: one per saved generator)."""
    if "world_size" in metadata:
        return int(metadata["world_size"])
    return max(1, sum(1 for key in tensors if key.startswith("rng.") and key.endswith(".cpu") and key != "rng.cpu"))


def load(out: Path, model, optimizer, scheduler, scaler, rank: int = 0, world_size: int = 1) -> RunState:
    """Restore what save() wrote; `rank`: whose random number generators this process takes.

    Only under the number of processes that wrote it: each rank's dropout masks continue from its own
    generator, and another split of the batches would not be the interrupted run's path."""
    path = out / STATE_FILE
    metadata = state_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise damaged(path, e) from e
    if (saved := saved_world_size(metadata, tensors)) != world_size:
        raise ValueError(f"{path} was written by a run with {saved} process(es), this one has {world_size}: "
                         f"resume it with {saved} (" + ("python train.py" if saved == 1 else
                                                         f"torchrun --nproc_per_node {saved}")
                         + "), or pass --overwrite to start over")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(tensors[f"model.{name}"])
    moments: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            moments.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": json.loads(metadata["param_groups"])})
    scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    if scaler_state := json.loads(metadata.get("scaler", "{}")):  # no "scaler": written before fp16 resume
        scaler.load_state_dict(scaler_state)
    # Files written before every rank saved its own generators hold rank 0's as rng.cpu / rng.cuda.
    generators = {"cpu": f"rng.{rank}.cpu", "cuda": f"rng.{rank}.cuda"}
    if generators["cpu"] not in tensors and rank == 0:
        generators = {"cpu": "rng.cpu", "cuda": "rng.cuda"}
    torch.set_rng_state(tensors[generators["cpu"]])
    if generators["cuda"] in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[generators["cuda"]])
    return RunState(**json.loads(metadata["state"]))
