"""The grid's plots (matplotlib, an optional extra): Table 2's question at a glance, every method's
score per task and K, and UniPELT's gates by layer. One panel per (task, K) cell that holds results:
K = 500 exists for only some tasks, so there is no task x K grid with empty panels."""
from pathlib import Path

import numpy as np

from bench.grid import paper
from bench.grid.paper import k_label, ordered_ks, ordered_methods, title
from minipelt.data.glue import get_task


def import_pyplot():
    """matplotlib is an optional extra: None (with a message) where it is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install -e .[plots]); "
              "the tables are written all the same")
        return None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def cell_name(task: str, k) -> str:
    return f"{get_task(task).dir_name}, K = {k_label(k)}"


def ordered_cells(keys) -> list[tuple]:
    """(K, task) pairs, K first, then the paper's task order."""
    return sorted(set(keys), key=lambda kt: (paper.k_order(kt[0]), paper.TASKS.index(kt[1])))


def panel_grid(plt, n: int, cols: int, width: float, height: float):
    """n panels in rows of `cols`; the axes beyond n are returned apart (for a legend, or hidden)."""
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.8), squeeze=False,
                             layout="constrained")
    return fig, list(axes.flat)[:n], list(axes.flat)[n:]


def legend_in_spare(fig, spare: list, handles, labels, ncol: int) -> None:
    """The legend in the first unused panel's place, or under the panels where every place is used."""
    for ax in spare:
        ax.set_axis_off()
    if spare:
        spare[0].legend(handles, labels, loc="center", frameon=False)
    else:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def save(plt, fig, path: Path) -> None:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def plot_table2(plt, compared: dict, theirs: dict, path: Path) -> None:
    """UniPELT (APL) minus the best of adapter, prefix and LoRA, and minus fine-tuning: one row per task and K,
    a bar for the mean paired difference, a dot per seed, the paper's difference as a black diamond."""
    rows = [(k, t) for k in compared for t in compared[k]]
    if not rows:
        print("no task and K with all of adapter, prefix, LoRA, UniPELT and fine-tuning: grid_table2.png not written")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.8), sharey=True, layout="constrained")
    y = np.arange(len(rows))[::-1]  # the first row on top
    for ax, field, against in ((axes[0], "vs_best", "the best of adapter, prefix, LoRA"),
                               (axes[1], "vs_finetune", "fine-tuning")):
        for yy, (k, t) in zip(y, rows):
            c = compared[k][t]
            mean = float(np.mean(c[field]))
            ax.barh(yy, mean, height=0.6, color="tab:green" if mean > 0 else "tab:red", alpha=0.45)
            ax.plot(c[field], [yy] * len(c[field]), "o", color="black", markersize=3,
                    label="our seeds (paired)" if yy == y[0] else None)
            if theirs.get((k, t)):
                ax.plot(theirs[k, t][field][0], yy, "D", color="black", markerfacecolor="white", markersize=6,
                        label="the paper (bert-base, 5 seeds)" if yy == y[0] else None)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_title(f"UniPELT (APL) − {against}", fontsize=10)
        ax.set_xlabel("difference in test score x100 (right of 0: UniPELT better)")
        ax.grid(axis="x", alpha=0.3)
    labels = [cell_name(t, k) + (f" (vs {title(compared[k][t]['best'])})") for k, t in rows]
    axes[0].set_yticks(y, labels)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("Does UniPELT beat the best of its submodules? (the paper's Table 2 question; bars: our mean)")
    save(plt, fig, path)


def plot_scores(plt, cells: dict, trivial: dict[str, float], path: Path) -> None:
    """Test main metric x100 of every method, one panel per task and K: a dot per seed, a bar for the mean,
    the trivial predictor as a dashed line."""
    keys = ordered_cells((k, t) for k, _, t in cells)
    if not keys:
        print("no results: grid_scores.png not written")
        return
    methods = ordered_methods(m for _, m, _ in cells)
    fig, axes, spare = panel_grid(plt, len(keys), 4, 3.4, 2.9)
    colors = {m: plt.cm.tab10(i) for i, m in enumerate(methods)}
    for ax, (k, t) in zip(axes, keys):
        present = [m for m in methods if (k, m, t) in cells]
        for x, m in enumerate(present):
            values = list(cells[k, m, t].values())
            ax.bar(x, np.mean(values), color=colors[m], alpha=0.5, label=title(m))
            ax.plot([x] * len(values), values, "o", color="black", markersize=2.5)
        if t in trivial:
            ax.axhline(trivial[t], color="gray", linestyle="--", linewidth=1, label="trivial predictor")
        ax.set_xticks(range(len(present)), [title(m).replace("UniPELT ", "Uni") for m in present], rotation=60,
                      fontsize=7)
        low = min(min(v.values()) for (kk, m, tt), v in cells.items() if (kk, tt) == (k, t))
        high = max(max(v.values()) for (kk, m, tt), v in cells.items() if (kk, tt) == (k, t))
        ax.set_ylim(min(0, low) - 2, high + 0.1 * (high - min(0, low)) + 2)
        ax.set_title(f"{cell_name(t, k)} ({get_task(t).main_metric})", fontsize=9)
        ax.set_ylabel("test score x100")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda entries: len(entries[1]))
    legend_in_spare(fig, spare, handles, labels, ncol=4)
    fig.suptitle("Test main metric x100 per task and K (bars: mean over seeds; dots: each seed)")
    save(plt, fig, path)


def plot_gates(plt, results: list[dict], path: Path) -> None:
    """UniPELT (APL)'s mean test-set gate value by layer, one panel per task and K, one line per gate kind."""
    gates: dict[tuple, list[dict]] = {}
    for r in results:
        if r["method"] == "unipelt" and r.get("gates"):
            gates.setdefault((r["k"], r["task"]), []).append(r["gates"])
    if not gates:
        print("no UniPELT results with gate values: grid_gates.png not written")
        return
    keys = ordered_cells(gates)
    fig, axes, spare = panel_grid(plt, len(keys), 4, 3.2, 2.5)
    for ax, (k, t) in zip(axes, keys):
        by_kind: dict[str, dict[int, list[float]]] = {}
        for seed_gates in gates[k, t]:  # one {"<layer>.<kind>": mean gate} per seed
            for key, value in seed_gates.items():
                layer, kind = key.split(".", 1)
                by_kind.setdefault(kind, {}).setdefault(int(layer), []).append(value)
        for kind, layers in sorted(by_kind.items()):
            ax.plot(sorted(layers), [np.mean(layers[n]) for n in sorted(layers)], marker="o", markersize=3,
                    label=f"{kind} gate")
        ax.set_title(f"{cell_name(t, k)} ({len(gates[k, t])} seeds)", fontsize=9)
        ax.set_ylim(0, 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.set_xlabel("layer (0: nearest the input)")
        ax.set_ylabel("mean gate value")
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda entries: len(entries[1]))
    legend_in_spare(fig, spare, handles, labels, ncol=len(labels))
    fig.suptitle("UniPELT (APL): mean gate value on the test set, by layer (mean over examples and seeds)")
    save(plt, fig, path)
