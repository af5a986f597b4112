"""train.py, SIGKILLed at a chosen point of the run: for the tests of resuming a killed run.

    python tests/kill_at.py POINT N TRAIN_ARGS...

POINT, where the N-th such event of the run is cut short by SIGKILL (no clean-up runs, as with a
power cut or an out-of-memory kill):
    step        the N-th optimizer step, before it starts (mid-epoch)
    evaluation  the N-th dev evaluation, after its predictions, before its metrics (mid-evaluation)
    best        the N-th write of best.safetensors, its temp file half written
    state       the N-th write of the resume state, its temp file half written
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, as from its root

import train  # noqa: E402
from minipelt.training import checkpoint, evaluation, runstate, trainer  # noqa: E402


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def on_nth_call(module, name: str, n: int, before=None, after=None) -> None:
    """Replace module.name by a wrapper that, on its n-th call, runs before(*args), the original and
    after(*args), then kills this process."""
    original, calls = getattr(module, name), 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n and before is not None:
            before(*args)
        result = original(*args, **kwargs)
        if calls == n and after is not None:
            after(*args)
        return result

    setattr(module, name, wrapper)


def half_written(tensors, tmp, metadata=None) -> None:
    """After save_file wrote `tmp`: cut it to half its bytes, as a write cut short leaves it; then die."""
    path = Path(tmp)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    kill()


POINTS = {
    "step": lambda n: on_nth_call(trainer, "train_step", n, before=lambda *args: kill()),
    "evaluation": lambda n: on_nth_call(evaluation, "compute_metrics", n, before=lambda *args: kill()),
    "best": lambda n: on_nth_call(checkpoint, "save_file", n, after=half_written),
    "state": lambda n: on_nth_call(runstate, "save_file", n, after=half_written),
}

if __name__ == "__main__":
    point, n, *args = sys.argv[1:]
    POINTS[point](int(n))
    train.main(args)
