"""What the grid's tables are set against: the trivial predictor (the defaults check, grid_check.md,
marks every method within a point of it), and the paper's protocol (each table's header names where
the runs depart from it).

    python bench/grid/grid.py --aggregate --data-dir ../shared/data/glue     # the data dir: for the trivial predictor

The trivial predictor is the best constant prediction on the test set: the majority class for
accuracy, the better of the two classes for F1 (always "paraphrase" on MRPC), and 0 for Matthews
correlation and Spearman, which a constant leaves undefined (minipelt's metrics give it 0). A
method within a point of it has learned nothing the test metric can see.
"""
import os
from collections import Counter
from pathlib import Path

import numpy as np

from minipelt.data.glue import GLUE_DIR_ENV, get_task, load_split
from minipelt.data.metrics import compute_metrics

# The paper's protocol where our runs may differ (docs/protocol.md): the option, its value there.
PAPER_SETTINGS = {"model": "bert-base-uncased", "pooling": "cls", "precision": "fp32",
                  "eval_every": "once an epoch", "dev_size": 1000, "max_seq_length": 128}


def trivial_score(task_name: str, data_dir) -> float:
    """The best constant prediction's test main metric x100."""
    task = get_task(task_name)
    labels = load_split(task_name, "test", data_dir).labels
    constants = [labels.mean()] if task.is_regression else range(task.num_labels)
    return 100 * max(compute_metrics((task.main_metric,), np.full(len(labels), c, dtype=labels.dtype), labels)
                     [task.main_metric] for c in constants)


def trivial_scores(tasks, data_dir) -> dict[str, float]:
    """Per task whose local test file is there; none without a data directory (no hub download here)."""
    data_dir = data_dir or os.environ.get(GLUE_DIR_ENV)
    if not data_dir:
        print("trivial predictor left out: pass --data-dir (the GLUE tsv directory) to compute it")
        return {}
    out = {}
    for t in tasks:
        try:
            out[t] = trivial_score(t, Path(data_dir))
        except FileNotFoundError as e:
            print(f"trivial predictor for {t} left out: {e}")
    return out


def settings_line(results: list[dict]) -> str:
    """The runs' settings that depart from the paper's protocol, e.g. 'precision bf16 (paper: fp32)'."""
    departures = []
    for name, theirs in PAPER_SETTINGS.items():
        ours = Counter(str(r.get(name, r.get("options", {}).get(name))) for r in results)
        ours.pop("None", None)
        if ours and list(ours) != [str(theirs)]:
            unit = " steps" if name == "eval_every" else ""
            if len(ours) == 1:
                values = next(iter(ours))
            else:  # mixed: say how many runs had each value
                values = " / ".join(f"{v} ({n} run{'s' * (n > 1)})" for v, n in sorted(ours.items(), key=lambda vn: -vn[1]))
            departures.append(f"{name.replace('_', ' ')} {values}{unit} (paper: {theirs})")
    epochs = sorted({r["options"]["epochs"] for r in results if "options" in r})
    if epochs:
        departures.append(f"epochs {' / '.join(map(str, epochs))} and per-method learning rates from our "
                          "STS-B + CoLA dev sweep (the paper's Appendix B values could not be retrieved)")
    return "Departures from the paper's protocol in these runs: " + ("; ".join(departures) or "none") + "."
