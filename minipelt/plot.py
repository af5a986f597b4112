"""Pictures of one run: what its gates did while it trained, the prefix's share of the attention,
and the dev metric.

    python -m minipelt.plot runs/stsb-k500-unipelt/seed42

Reads the run's results.json "history" (one entry per dev evaluation: the step, the dev metrics,
each gate's mean per layer and kind over the dev set, the prefix's share of the attention mass per
layer) and writes, into the run directory:

    training.png       everything below in one figure
    dev_metric.png     the dev metrics over training steps, the best step marked
    gates.png          one panel per gate kind (adapter, prefix, lora_query, lora_value), one line per layer
    prefix_share.png   lam = G Z_P / (G Z_P + Z_T) per layer: how much of the attention goes to the prefix

A method without gates or without a prefix gets no gates.png or prefix_share.png.
matplotlib is an optional extra: pip install -e .[plots]
"""
import argparse
import json
import sys
from pathlib import Path

from minipelt.data.glue import TASKS
from minipelt.model.methods import METHODS

INSTALL_HINT = "minipelt.plot needs matplotlib, an optional extra: pip install -e .[plots]"
GATE_TITLES = {"adapter": "adapter gate G_A", "prefix": "prefix gate G_P",
               "lora_query": "LoRA gate G_L, on W_q", "lora_value": "LoRA gate G_L, on W_v"}


def import_pyplot():
    """matplotlib.pyplot drawing to files (no display), or a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_history(run_dir: Path) -> tuple[dict, list[dict]]:
    """The run's results.json and its history; a one-line error naming what is missing and what to do."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: give a run directory of a finished run (train.py writes "
                         f"results.json there when the run ends)")
    results = json.loads(path.read_text())
    if not results.get("history"):
        raise SystemExit(f"{path} has no dev-evaluation history: it was written before runs recorded one; "
                         f"rerun it with train.py --overwrite to draw it")
    return results, results["history"]


def steps(history: list[dict]) -> list[int]:
    return [entry["step"] for entry in history]


def layer_colors(plt, n_layers: int) -> list:
    """One color per layer, dark (layer 0, nearest the input) to light (the top layer)."""
    return [plt.cm.viridis(i / max(1, n_layers - 1) * 0.9) for i in range(n_layers)]


def draw_per_layer(plt, ax, history: list[dict], values_of, title: str, ylabel: str) -> None:
    """One line per layer over the training steps; values_of(entry) -> one value per layer."""
    per_step = [values_of(entry) for entry in history]  # (evaluations, layers)
    colors = layer_colors(plt, len(per_step[0]))
    for layer, color in enumerate(colors):
        ax.plot(steps(history), [values[layer] for values in per_step], color=color, marker="o", markersize=2,
                label=f"layer {layer}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def draw_gate(plt, ax, history: list[dict], kind: str) -> None:
    draw_per_layer(plt, ax, history, lambda entry: entry["gates"][kind], GATE_TITLES.get(kind, f"{kind} gate"),
                   "mean gate value on dev")
    ax.set_ylim(0, 1)


def draw_prefix_share(plt, ax, history: list[dict]) -> None:
    draw_per_layer(plt, ax, history, lambda entry: [100 * share for share in entry["prefix_share"]],
                   "prefix's share of the attention", "% of attention on the prefix")
    ax.set_ylim(bottom=0)


def draw_dev(ax, history: list[dict], results: dict) -> None:
    """Each dev metric over the training steps (x100), the main one bold, the best step (the checkpoint kept) marked."""
    main = TASKS[results["task"]].main_metric if results.get("task") in TASKS else next(iter(history[0]["dev"]))
    for metric in history[0]["dev"]:
        ax.plot(steps(history), [100 * entry["dev"][metric] for entry in history], marker="o", markersize=2,
                linewidth=2 if metric == main else 1, label=metric + (" (main)" if metric == main else ""))
    if results.get("best_step") is not None:
        ax.axvline(results["best_step"], color="gray", linestyle="--", linewidth=1, label="best (kept)")
    ax.set_title("dev score", fontsize=10)
    ax.set_xlabel("training step")
    ax.set_ylabel("dev score x100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def gate_kinds(history: list[dict]) -> list[str]:
    return list(history[-1]["gates"])


def has_prefix_share(history: list[dict]) -> bool:
    return history[-1].get("prefix_share") is not None


def figures(plt, results: dict, history: list[dict]) -> dict:
    """file name -> matplotlib Figure, for the run's results and history."""
    panels = [lambda ax: draw_dev(ax, history, results)]
    panels += [lambda ax, kind=kind: draw_gate(plt, ax, history, kind) for kind in gate_kinds(history)]
    if has_prefix_share(history):
        panels.append(lambda ax: draw_prefix_share(plt, ax, history))
    out = {"training.png": grid_figure(plt, panels, f"{run_title(results)}: training, evaluated on dev")}
    out["dev_metric.png"] = grid_figure(plt, panels[:1], run_title(results))
    if gate_kinds(history):
        out["gates.png"] = grid_figure(plt, panels[1:1 + len(gate_kinds(history))],
                                       f"{run_title(results)}: gate values during training (mean over dev)")
    if has_prefix_share(history):
        out["prefix_share.png"] = grid_figure(plt, panels[-1:], run_title(results))
    return out


def run_title(results: dict) -> str:
    """e.g. 'STS-B, UniPELT (APL), K = 500, seed 42, minilm'."""
    task = TASKS[results["task"]].dir_name if results.get("task") in TASKS else results.get("task")
    method = METHODS[results["method"]].title if results.get("method") in METHODS else results.get("method")
    parts = [task, method, f"K = {results['k']}" if results.get("k") else "all training data",
             f"seed {results.get('seed')}", results.get("model")]
    return ", ".join(str(p) for p in parts if p is not None)


def grid_figure(plt, panels: list, title: str):
    """The panels in at most two rows (3 in one row, 4 as 2 x 2), one layer legend under them."""
    cols = len(panels) if len(panels) <= 3 else -(-len(panels) // 2)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax, draw in zip(axes.flat, panels):
        draw(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    layered = [ax for ax in axes.flat if any(line.get_label().startswith("layer ") for line in ax.get_lines())]
    if layered:
        handles, labels = layered[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3 * cols), frameon=False,
                   title="layer 0 is nearest the input", title_fontsize=8, fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def draw(run_dir: Path) -> list[Path]:
    """Write the run's pictures into run_dir; returns their paths."""
    results, history = read_history(run_dir)
    plt = import_pyplot()
    written = []
    for name, fig in figures(plt, results, history).items():
        fig.savefig(run_dir / name, dpi=110)
        plt.close(fig)
        written.append(run_dir / name)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minipelt.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (each with a results.json)")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        for path in draw(run_dir):
            print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
