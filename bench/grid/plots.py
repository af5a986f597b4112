"""The grid's plots: UniPELT's gates by layer, and score against K (matplotlib, an optional dependency)."""
from pathlib import Path

import numpy as np

from bench.grid import paper
from bench.grid.paper import k_label, ordered_ks, ordered_methods, title
from minipelt.data.glue import get_task


def import_pyplot():
    """matplotlib is an optional bench dependency: None (with a message) where it is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install -e .[plots]); "
              "the tables are written all the same")
        return None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def legend_entries(axes) -> tuple[list, list]:
    """The lines of the panel that has the most, for one legend above all panels."""
    return max((ax.get_legend_handles_labels() for ax in axes.flat), key=lambda entries: len(entries[1]))


def plot_gates(plt, results: list[dict], path: Path) -> None:
    """UniPELT (APL)'s mean test-set gate value by layer, one panel per K and task, one line per gate."""
    gates: dict[tuple, list[dict]] = {}
    for r in results:
        if r["method"] == "unipelt" and r.get("gates"):
            gates.setdefault((r["k"], r["task"]), []).append(r["gates"])
    if not gates:
        print("no UniPELT results with gate values: grid_gates.png not written")
        return
    ks, tasks = ordered_ks(k for k, _ in gates), [t for t in paper.TASKS if any(tt == t for _, tt in gates)]
    fig, axes = plt.subplots(len(ks), len(tasks), figsize=(3.2 * len(tasks), 2.4 * len(ks) + 0.8), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for (row, k), (col, t) in ((rk, ct) for rk in enumerate(ks) for ct in enumerate(tasks)):
        ax = axes[row][col]
        ax.set_title(f"{get_task(t).dir_name}, K = {k_label(k)}", fontsize=9)
        seeds = gates.get((k, t), [])  # one {"<layer>.<kind>": mean gate} per seed
        by_kind: dict[str, dict[int, list[float]]] = {}
        for seed_gates in seeds:
            for key, value in seed_gates.items():
                layer, kind = key.split(".", 1)
                by_kind.setdefault(kind, {}).setdefault(int(layer), []).append(value)
        for kind, layers in sorted(by_kind.items()):
            ax.plot(sorted(layers), [np.mean(layers[n]) for n in sorted(layers)], marker="o", markersize=3,
                    label=kind)
        ax.set_ylim(0, 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if row == len(ks) - 1:
            ax.set_xlabel("layer")
        if col == 0:
            ax.set_ylabel("mean gate value")
    handles, labels = legend_entries(axes)
    fig.suptitle("UniPELT (APL): mean gate value on the test set, by layer (mean over examples and seeds)")
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def plot_score_vs_k(plt, cells: dict, path: Path) -> None:
    """Test main metric x100 against K, one panel per task, one line per method (error bars: std over seeds)."""
    cells = {key: v for key, v in cells.items() if key[0] is not None}  # 'full' has no place on a K axis
    if not cells:
        print("no few-shot results: grid_score_vs_k.png not written")
        return
    tasks = [t for t in paper.TASKS if any(key[2] == t for key in cells)]
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows + 0.8), squeeze=False, layout="constrained")
    methods = ordered_methods(key[1] for key in cells)
    for ax, t in zip(axes.flat, tasks):
        for method in methods:
            ks = ordered_ks(k for (k, m, tt) in cells if (m, tt) == (method, t))
            if ks:
                values = [list(cells[k, method, t].values()) for k in ks]  # per seed
                ax.errorbar(ks, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                            markersize=3, capsize=2, label=title(method))
        ax.set_title(f"{get_task(t).dir_name} ({get_task(t).main_metric})", fontsize=9)
        ax.set_xscale("log")
        ax.set_xticks(ordered_ks(key[0] for key in cells), [k_label(k) for k in ordered_ks(key[0] for key in cells)])
        ax.minorticks_off()
        ax.set_xlabel("K (training examples)")
        ax.set_ylabel("test score x100")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    handles, labels = legend_entries(axes)
    fig.suptitle("Test main metric x100 against K (mean ± std over seeds)")
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 7), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
