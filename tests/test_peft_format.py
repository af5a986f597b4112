"""minipelt.peft_format against a LoRA that peft 0.21.2 saved (tests/fixtures/reference/peft_lora,
made by make_peft_lora.py): the import computes peft's outputs, the export writes what peft wrote,
and a LoRA trained here goes out and back in to the same test metrics. peft is not imported."""
import json
import shutil

import pytest
import tiny_glue
import torch
from safetensors.torch import load_file
from tiny_glue import eval_cli

from minipelt import peft_format
from minipelt.training.checkpoint import model_from_checkpoint
from minipelt.training.trainer import train

FIXTURES = tiny_glue.REPO / "tests" / "fixtures" / "reference"
PEFT_DIR, BASE = FIXTURES / "peft_lora", FIXTURES / "tiny_bert"
TOL = 1e-5


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("peft") / "imported"
    notes = peft_format.import_(PEFT_DIR, run_dir, model=str(BASE))
    return run_dir, notes


@pytest.mark.parametrize("batch", ["unpadded", "padded"])
def test_import_computes_peft_outputs(imported, batch):
    run_dir, notes = imported
    assert notes[0] == "note: lora_dropout 0.1 ignored; dropout changes training only"
    expected = load_file(FIXTURES / "peft_lora_outputs.safetensors")
    inputs = load_file(FIXTURES / "common.safetensors")
    model = model_from_checkpoint(run_dir / "best.safetensors", BASE)
    assert model.bert.encoder.layer[0].attention.self.query.scaling == 12 / 4  # the fixture's alpha / r
    args = [inputs[f"{batch}.{key}"] for key in ("input_ids", "attention_mask", "token_type_ids")]
    with torch.no_grad():
        hidden, logits = model.bert(*args).last_hidden_state, model(*args)
    torch.testing.assert_close(hidden, expected[f"{batch}.last_hidden_state"], atol=TOL, rtol=0)
    torch.testing.assert_close(logits, expected[f"{batch}.logits"], atol=TOL, rtol=0)


def test_export_writes_what_peft_saved(imported, tmp_path):
    run_dir, _ = imported
    peft_format.export(run_dir, tmp_path / "out")
    ours, theirs = (load_file(d / "adapter_model.safetensors") for d in (tmp_path / "out", PEFT_DIR))
    assert ours.keys() == theirs.keys()
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    ours, theirs = (json.loads((d / "adapter_config.json").read_text()) for d in (tmp_path / "out", PEFT_DIR))
    as_sets = ("target_modules", "modules_to_save")  # peft writes a set as a list in no fixed order
    differ = [field for field in ours if field not in ("base_model_name_or_path", "lora_dropout")
              and (set(ours[field]) != set(theirs[field]) if field in as_sets else ours[field] != theirs[field])]
    assert not differ, {field: (ours[field], theirs.get(field)) for field in differ}
    # every field peft needs to rebuild this LoRA is written, none left to a default that could change
    assert {"peft_type", "task_type", "r", "lora_alpha", "target_modules", "modules_to_save", "use_rslora",
            "use_dora", "bias", "rank_pattern", "alpha_pattern", "fan_in_fan_out"} <= ours.keys()
    assert ours["base_model_name_or_path"] == str(BASE.resolve())


def test_lora_trained_here_goes_out_and_back_to_the_same_test_metrics(workspace, tmp_path, capsys):
    run_dir = tmp_path / "lora"
    results = train(tiny_glue.config(workspace.model, workspace.glue, run_dir, task="rte", method="lora",
                                     epochs=1, method_options={"lora_r": 2}))
    notes = peft_format.export(run_dir, tmp_path / "peft")
    assert not [n for n in notes if n.startswith("note")]  # the tiny BERT pools [CLS]: PEFT's head
    with pytest.raises(FileExistsError, match="already holds an adapter"):  # never over an earlier export
        peft_format.export(run_dir, tmp_path / "peft")
    peft_format.import_(tmp_path / "peft", tmp_path / "back", task="rte")  # the base from the config's path
    capsys.readouterr()
    eval_cli.main(["--checkpoint", str(tmp_path / "back"), "--data-dir", str(workspace.glue)])
    assert json.loads(capsys.readouterr().out)["test"] == results["test"]
    assert load_file(run_dir / "best.safetensors").keys() == load_file(tmp_path / "back" / "best.safetensors").keys()


def test_mean_pooled_run_exports_with_a_note(workspace, tmp_path):
    run_dir = tmp_path / "mean"
    train(tiny_glue.config(workspace.model, workspace.glue, run_dir, task="rte", method="lora", epochs=1,
                           pooling="mean"))
    notes = peft_format.export(run_dir, tmp_path / "peft")
    assert any("mean pooling" in n and "pools [CLS]" in n for n in notes)


def test_export_refuses_a_gated_or_other_method(workspace, tmp_path):
    run_dir = tmp_path / "unipelt"
    train(tiny_glue.config(workspace.model, workspace.glue, run_dir, task="rte", method="lora", epochs=1,
                           method_options={"gated": True}))
    with pytest.raises(ValueError, match=r"trained with lora\(gated\); PEFT's LoRA format holds ungated LoRA"):
        peft_format.export(run_dir, tmp_path / "peft")


@pytest.mark.parametrize("change, expected", [
    ({"peft_type": "IA3"}, "is a IA3 adapter; minipelt imports LoRA only"),
    ({"target_modules": ["query", "key", "value"]}, "exactly query and value"),
    ({"target_modules": ".*attention.*"}, "exactly query and value"),
    ({"use_rslora": True}, "use_rslora = True, which minipelt cannot express: rsLoRA scales by alpha / sqrt(r)"),
    ({"use_dora": True}, "use_dora = True"),
    ({"bias": "all"}, "bias = 'all'"),
    ({"lora_bias": True}, "lora_bias = True"),
    ({"rank_pattern": {"query": 2}}, "its rank differs between layers"),
    ({"alpha_pattern": {"query": 2}}, "its alpha differs between layers"),
    ({"modules_to_save": ["classifier", "pooler"]}, "also trains ['pooler']"),
    ({"task_type": "CAUSAL_LM"}, "task_type CAUSAL_LM"),
])
def test_import_refuses_what_minipelt_cannot_express(tmp_path, change, expected):
    peft_dir = shutil.copytree(PEFT_DIR, tmp_path / "peft")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError) as error:
        peft_format.import_(peft_dir, tmp_path / "run", model=str(BASE))
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_import_cli_errors_name_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        peft_format.main(["import", str(tmp_path), str(tmp_path / "run")])
    assert "needs adapter_config.json and adapter_model.safetensors" in exit_.value.code
    peft_dir = shutil.copytree(PEFT_DIR, tmp_path / "peft")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "org/unknown"}))
    with pytest.raises(SystemExit) as exit_:
        peft_format.main(["import", str(peft_dir), str(tmp_path / "run")])
    assert "'org/unknown' is not a model minipelt can load: pass --model" in exit_.value.code


@pytest.mark.parametrize("task, expected", [("stsb", "has a head with 3 outputs, but stsb has 1: pass the --task"),
                                            ("wnli", "unknown GLUE task 'wnli'")])
def test_import_checks_the_task_it_records(tmp_path, task, expected):
    with pytest.raises(ValueError, match=expected):
        peft_format.import_(PEFT_DIR, tmp_path / "run", model=str(BASE), task=task)
    assert not (tmp_path / "run").exists()
