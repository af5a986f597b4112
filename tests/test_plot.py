"""python -m minipelt.plot: a run directory's results.json history -> its pictures."""
import json
import sys

import pytest

from minipelt import plot

N_LAYERS = 3
KINDS = ("adapter", "prefix", "lora_query", "lora_value")


def history_entry(step: int, gated: bool, with_prefix: bool) -> dict:
    """One dev evaluation in the results.json schema, with values that tell layer, kind and step apart."""
    return {"step": step, "dev": {"pearson": 0.5 + step / 1000, "spearman": 0.4 + step / 1000},
            "gates": {kind: [round(0.1 * (layer + 1) + step / 10000 + 0.01 * k, 6) for layer in range(N_LAYERS)]
                      for k, kind in enumerate(KINDS)} if gated else {},
            "prefix_share": [round(0.02 * (layer + 1) + step / 20000, 6) for layer in range(N_LAYERS)]
            if with_prefix else None}


def write_run(directory, method="unipelt", gated=True, with_prefix=True, history=True):
    directory.mkdir(parents=True, exist_ok=True)
    results = {"task": "stsb", "method": method, "k": 100, "seed": 1, "model": "made-up", "best_step": 28,
               "dev": {"pearson": 0.528, "spearman": 0.428}}
    if history:
        results["history"] = [history_entry(step, gated, with_prefix) for step in (14, 28, 42)]
    (directory / "results.json").write_text(json.dumps(results))
    return results


def test_draws_each_panel_from_the_history(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    results = write_run(tmp_path / "run")
    figures = plot.figures(plot.import_pyplot(), results, results["history"])
    assert set(figures) == {"training.png", "dev_metric.png", "gates.png", "prefix_share.png"}
    axes = {ax.get_title(): ax for ax in figures["training.png"].axes if ax.get_visible() and ax.get_title()}
    assert set(axes) == {"dev score", *plot.GATE_TITLES.values(), "prefix's share of the attention"}
    assert figures["training.png"].get_suptitle().startswith("STS-B, UniPELT (APL), K = 100, seed 1, made-up")
    for kind in KINDS:  # one line per layer, the layer's values over the steps
        lines = axes[plot.GATE_TITLES[kind]].get_lines()
        assert [line.get_label() for line in lines] == [f"layer {n}" for n in range(N_LAYERS)]
        for layer, line in enumerate(lines):
            assert list(line.get_xdata()) == [14, 28, 42]
            assert list(line.get_ydata()) == [e["gates"][kind][layer] for e in results["history"]]
    share = axes["prefix's share of the attention"].get_lines()[2].get_ydata()
    assert list(share) == pytest.approx([100 * e["prefix_share"][2] for e in results["history"]])
    dev = {line.get_label(): line for line in axes["dev score"].get_lines()}
    assert list(dev["spearman (main)"].get_ydata()) == pytest.approx([41.4, 42.8, 44.2])  # STS-B's main metric
    assert list(dev["best (kept)"].get_xdata()) == [28, 28]
    for fig in figures.values():
        plt.close(fig)


def test_writes_the_pngs_into_the_run_directory(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_run(tmp_path / "run")
    plot.main([str(tmp_path / "run")])
    printed = capsys.readouterr().out
    for name in ("training.png", "dev_metric.png", "gates.png", "prefix_share.png"):
        assert (tmp_path / "run" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {tmp_path / 'run' / name}" in printed


def test_an_ungated_method_without_prefix_gets_only_its_dev_curve(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path / "run", method="lora", gated=False, with_prefix=False)
    written = plot.draw(tmp_path / "run")
    assert sorted(p.name for p in written) == ["dev_metric.png", "training.png"]


def test_ungated_prefix_tuning_gets_its_prefix_share(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path / "run", method="prefix", gated=False, with_prefix=True)
    assert sorted(p.name for p in plot.draw(tmp_path / "run")) == ["dev_metric.png", "prefix_share.png",
                                                                      "training.png"]


def test_without_matplotlib_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    write_run(tmp_path / "run")
    with pytest.raises(SystemExit, match=r"needs matplotlib, an optional extra: pip install -e \.\[plots\]$"):
        plot.main([str(tmp_path / "run")])


@pytest.mark.parametrize("history", [False, None])
def test_a_run_without_history_or_results_is_a_clear_error(tmp_path, history):
    if history is False:
        write_run(tmp_path / "run", history=False)
        expected = "has no dev-evaluation history"
    else:
        (tmp_path / "run").mkdir()
        expected = "results.json not found: give a run directory of a finished run"
    with pytest.raises(SystemExit, match=expected):
        plot.main([str(tmp_path / "run")])
