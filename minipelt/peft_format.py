"""A trained LoRA to and from the PEFT format, the one the Hugging Face ecosystem loads.

    python -m minipelt.peft_format export RUN_DIR OUT_DIR          # a train.py run of --method lora
    python -m minipelt.peft_format import PEFT_DIR RUN_DIR [--model M] [--task T]

minipelt's LoRA and PEFT's compute the same function, y = W x + b + (alpha / r) B A x, with
A (r, H_in) and B (H_out, r) stored the same way, so the conversion is a renaming of tensors.
A PEFT directory for `BertForSequenceClassification` (task_type SEQ_CLS) holds two files:

    adapter_config.json         peft_type LORA, r, lora_alpha, target_modules, modules_to_save, ...
    adapter_model.safetensors   the trained tensors under these names:

    minipelt (SequenceClassifier)                       PEFT
    bert.encoder.layer.N.attention.self.query.lora_A    base_model.model. + the same + .weight
    (the same for value, and for lora_B)
    classifier.weight, classifier.bias                  base_model.model. + the same

PEFT trains the head as a "module to save" (in memory `classifier.modules_to_save.default`)
and saves it under the plain name above, as peft 0.21.2 does (tests/fixtures/make_peft_lora.py).
Both directions use only json and safetensors: peft is not needed.

What does not map is refused with the reason: export takes ungated LoRA only (PEFT's LoRA has
no UniPELT gates, adapters or prefixes); import takes LoRA on exactly query and value with the
plain alpha / r scaling, no LoRA biases and one rank and alpha for every layer. LoRA dropout
changes training only, so it is ignored (with a note). The head is BERT's own: PEFT's
BertForSequenceClassification reads the pooler output ([CLS]); a run trained with mean pooling
exports the same encoder but its head then sees other inputs in PEFT (export says so).
"""
import argparse
import json
import re
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from minipelt.data.glue import get_task
from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import PeltConfig
from minipelt.training.checkpoint import read_metadata, save_trainable
from minipelt.training.runstate import BEST_FILE, RESULTS_FILE
from minipelt.weights import resolve_model

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
LORA_NAME = re.compile(r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)\.lora_[AB]")
HEAD = ("classifier.weight", "classifier.bias")
TARGETS = ["query", "value"]
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased": "bert-base-uncased"}
# adapter_config.json fields minipelt cannot express: (field, the value that means "not used", why).
REFUSED = [
    ("use_rslora", False, "rsLoRA scales by alpha / sqrt(r), minipelt by alpha / r"),
    ("use_dora", False, "DoRA adds a magnitude vector that minipelt's LoRA does not have"),
    ("bias", "none", "it trains biases of the base model, which a minipelt LoRA run keeps frozen"),
    ("lora_bias", False, "LoRA's B has a bias in it, minipelt's has none"),
    ("rank_pattern", {}, "its rank differs between layers; minipelt has one r"),
    ("alpha_pattern", {}, "its alpha differs between layers; minipelt has one alpha"),
    ("layers_to_transform", None, "it leaves some layers without LoRA; minipelt puts it on every layer"),
    ("fan_in_fan_out", False, "its weights are stored transposed (GPT-2 style Conv1D)"),
    ("layer_replication", None, "it duplicates base layers"),
    ("trainable_token_indices", None, "it trains some token embeddings"),
    ("target_parameters", None, "it puts LoRA on raw parameters"),
]


def peft_name(name: str) -> str:
    """minipelt's name -> PEFT's: 'bert.encoder.layer.0.attention.self.query.lora_A' -> PREFIX + it + '.weight'."""
    return PREFIX + name + ("" if name in HEAD else ".weight")


def minipelt_name(key: str) -> str | None:
    """PEFT's name -> minipelt's, or None if it is not a LoRA matrix of query/value or the head."""
    if not key.startswith(PREFIX):
        return None
    name = key[len(PREFIX):]
    if name in HEAD:
        return name
    if name.endswith(".weight") and LORA_NAME.fullmatch(name[:-len(".weight")]):
        return name[:-len(".weight")]
    return None


def lora_config(pelt: PeltConfig, base_model: str) -> dict:
    """The adapter_config.json of a minipelt LoRA: what PEFT reads to rebuild it (every other field at its default)."""
    alpha = int(pelt.lora_alpha) if float(pelt.lora_alpha).is_integer() else pelt.lora_alpha
    return {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": base_model,
            "r": pelt.lora_r, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": TARGETS,
            "modules_to_save": ["classifier", "score"], "inference_mode": True, "init_lora_weights": True,
            **{field: value for field, value, _ in REFUSED}}


def export(run_dir: Path, out_dir: Path) -> list[str]:
    """Write RUN_DIR's LoRA as a PEFT directory; returns the notes to print."""
    results_file, checkpoint = run_dir / RESULTS_FILE, run_dir / BEST_FILE
    if not results_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no {RESULTS_FILE}: export takes the directory of a finished "
                                f"train.py run")
    results, meta = json.loads(results_file.read_text()), read_metadata(checkpoint)
    pelt = PeltConfig.from_json(meta["pelt"])
    if pelt != PeltConfig.from_method("lora", lora_r=pelt.lora_r, lora_alpha=pelt.lora_alpha):
        raise ValueError(f"{run_dir} was trained with {pelt.name}; PEFT's LoRA format holds ungated LoRA on "
                         f"query and value only (train with --method lora)")
    tensors = load_file(str(checkpoint))
    if unexpected := sorted(n for n in tensors if n not in HEAD and not LORA_NAME.fullmatch(n)):
        raise ValueError(f"{checkpoint} holds tensors other than LoRA and the head ({unexpected[0]}, ...)")
    if (out_dir / WEIGHTS_FILE).exists():
        raise FileExistsError(f"{out_dir} already holds an adapter ({WEIGHTS_FILE}); export into a new directory")
    model = results["model"]
    base = HUB_IDS.get(model) or str(Path(model).resolve())
    notes = [f"base model: {base} (load it with BertForSequenceClassification, num_labels={meta['num_labels']})"]
    if meta["pooling"] != "cls":
        notes.append(f"note: {run_dir} was trained with {meta['pooling']} pooling, but PEFT's "
                     f"BertForSequenceClassification pools [CLS] through BERT's pooler: its encoder outputs are "
                     f"this run's, its logits are not")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({peft_name(n): t.contiguous() for n, t in tensors.items()}, str(out_dir / WEIGHTS_FILE),
              metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(lora_config(pelt, base), indent=2, sort_keys=True) + "\n")
    return notes


def check_config(config: dict, where: Path) -> list[str]:
    """Refuse what minipelt cannot express, in one line; returns the notes to print."""
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{where} is a {config.get('peft_type')} adapter; minipelt imports LoRA only")
    if config.get("task_type") != "SEQ_CLS":
        raise ValueError(f"{where} has task_type {config.get('task_type')}; minipelt imports SEQ_CLS "
                         f"(a LoRA with a classification head)")
    targets = config.get("target_modules")
    if not isinstance(targets, list) or sorted(targets) != TARGETS:
        raise ValueError(f"{where} puts LoRA on {targets}; minipelt's LoRA wraps exactly query and value")
    if extra := sorted(set(config.get("modules_to_save") or []) - {"classifier", "score"}):
        raise ValueError(f"{where} also trains {extra}; minipelt's LoRA trains the LoRA matrices and the head only")
    for field, plain, why in REFUSED:
        if config.get(field, plain) not in (plain, None, {}, []):  # absent, or the value meaning "not used"
            raise ValueError(f"{where} sets {field} = {config[field]!r}, which minipelt cannot express: {why}")
    dropout = config.get("lora_dropout", 0.0)
    return [f"note: lora_dropout {dropout} ignored; dropout changes training only"] if dropout else []


def base_model_of(config: dict, model: str | None) -> str:
    """--model, else the config's base_model_name_or_path where minipelt can load it."""
    if model is not None:
        return model
    named = config.get("base_model_name_or_path") or ""
    by_id = {hub_id: name for name, hub_id in HUB_IDS.items()} | {"google-bert/bert-base-uncased": "bert-base-uncased"}
    if named in by_id:
        return by_id[named]
    if (Path(named) / "config.json").is_file():
        return named
    raise ValueError(f"its base_model_name_or_path {named!r} is not a model minipelt can load: pass --model (a "
                     f"model directory, or {', '.join(HUB_IDS)})")


def import_(peft_dir: Path, run_dir: Path, model: str | None = None, task: str | None = None) -> list[str]:
    """Make RUN_DIR a minipelt run (best.safetensors, results.json) that eval.py evaluates; returns notes."""
    config_file, weights_file = peft_dir / CONFIG_FILE, peft_dir / WEIGHTS_FILE
    if not config_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(f"{peft_dir} needs {CONFIG_FILE} and {WEIGHTS_FILE} (a .bin adapter is a pickle: "
                                f"minipelt reads safetensors only)")
    if (run_dir / RESULTS_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a run ({RESULTS_FILE}); import into a new directory")
    config = json.loads(config_file.read_text())
    notes = check_config(config, config_file)
    base = base_model_of(config, model)
    saved = load_file(str(weights_file))
    tensors = {minipelt_name(key): t for key, t in saved.items()}
    if None in tensors:
        unknown = next(key for key in saved if minipelt_name(key) is None)
        raise ValueError(f"{weights_file} holds {unknown}, which is not a LoRA matrix of query/value or the head "
                         f"classifier; minipelt cannot place it")
    pelt = PeltConfig.from_method("lora", lora_r=config["r"], lora_alpha=float(config["lora_alpha"]))
    if "classifier.weight" not in tensors:
        raise ValueError(f"{weights_file} has no head (base_model.model.classifier.weight); minipelt imports a "
                         f"LoRA with its trained classification head")
    num_labels = tensors["classifier.weight"].shape[0]
    if task is not None:  # recorded for eval.py: a known GLUE task whose labels fit the head
        glue_task = get_task(task)
        if glue_task.num_labels != num_labels:
            raise ValueError(f"{weights_file} has a head with {num_labels} outputs, but {glue_task.name} has "
                             f"{glue_task.num_labels}: pass the --task it was trained on")
        task = glue_task.name
    bert = BertModel.from_pretrained(resolve_model(base), pelt)
    classifier = SequenceClassifier(bert, num_labels, "cls")
    own = dict(classifier.named_parameters())
    expected = {n for n in own if n in HEAD or LORA_NAME.fullmatch(n)}
    if missing := sorted(expected - set(tensors)):
        raise ValueError(f"{weights_file} lacks {missing[0]} (and {len(missing) - 1} more): it was saved for "
                         f"another base model than {base}? pass the --model it was trained on")
    if wrong := [n for n, t in tensors.items() if t.shape != own[n].shape]:
        raise ValueError(f"{weights_file}: {wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, the base model "
                         f"{base} needs {tuple(own[wrong[0]].shape)}; pass the --model it was trained on")
    classifier.load_state_dict(tensors, strict=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_trainable(classifier, run_dir / BEST_FILE)
    options = {"task": task, "method": "lora", "model": base, "pooling": "cls",
               "method_options": {"lora_r": pelt.lora_r, "lora_alpha": pelt.lora_alpha}}
    results = {"task": task, "method": "lora", "model": base, "pooling": "cls", "imported_from": str(peft_dir),
               "options": options}
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return notes + ([] if task else [f"no --task given: evaluate with python eval.py --checkpoint {run_dir} "
                                     f"--task TASK"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minipelt.peft_format", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    out = sub.add_parser("export", help="a train.py run of --method lora -> a PEFT LoRA directory")
    out.add_argument("run_dir", type=Path, help="the run's directory (results.json, best.safetensors)")
    out.add_argument("out_dir", type=Path, help="where adapter_config.json and adapter_model.safetensors go")
    into = sub.add_parser("import", help="a PEFT LoRA directory (SEQ_CLS) -> a minipelt run that eval.py evaluates")
    into.add_argument("peft_dir", type=Path, help="holding adapter_config.json and adapter_model.safetensors")
    into.add_argument("run_dir", type=Path, help="a new run directory")
    into.add_argument("--model", help="the base model (default: the config's base_model_name_or_path)")
    into.add_argument("--task", help="the GLUE task it was trained on, recorded for eval.py (default: none)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            notes = export(args.run_dir, args.out_dir) + [f"wrote {args.out_dir}/{CONFIG_FILE}, {WEIGHTS_FILE}"]
        else:
            notes = import_(args.peft_dir, args.run_dir, args.model, args.task) + [f"wrote {args.run_dir}"]
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
