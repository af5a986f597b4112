"""Evaluate a trained checkpoint on a task's test set(s) or on your own tsv file; optionally write predictions.

    python eval.py --checkpoint runs/stsb-k100-unipelt/seed42 --data-dir ../shared/data/glue
    python eval.py --checkpoint best.safetensors --model minilm --task rte --file mine.tsv --predict out.tsv
    python eval.py --checkpoint runs/reviews_train-k100-lora/seed42 --text "The pizza was cold."

A checkpoint holds only the trained parameters, with the method, head and pooling in its
metadata; the frozen base weights come from --model. Given a run's output directory, its
results.json supplies the defaults for --model, --task, --data-dir, --max-seq-length,
--batch-size and --precision, so the run is evaluated exactly as train.py evaluated it: the printed test
metrics equal those in results.json. Metrics go to stdout as JSON. --predict writes a tsv
with one row per example: its index and the predicted class name (the score for STS-B). A
file without a label column can only be predicted on. A run on your own files (--train-file)
reads --file with its recorded columns and labels. --text (and --text-pair) prints the
prediction for one input, with its class probabilities and the gate values of each layer.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from minipelt import textbook
from minipelt.data.fewshot import encode_split
from minipelt.data.files import load_task_split, read_task_file, run_task
from minipelt.data.glue import Split, Task, get_task
from minipelt.data.metrics import compute_metrics
from minipelt.data.tokenizer import Tokenizer
from minipelt.model.methods import PeltConfig
from minipelt.training import runstate
from minipelt.training.checkpoint import model_from_checkpoint, read_metadata
from minipelt.training.config import TrainConfig
from minipelt.training.device import resolve_device
from minipelt.training.evaluation import predict, predict_one, sequence_length
from minipelt.training.options import parser
from minipelt.weights import resolve_model

TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="best.safetensors, or the run's output directory holding it")
    p.add_argument("--model", help="base weights it was trained on (default: from the run's results.json)")
    p.add_argument("--task", help="cola sst2 mrpc stsb qqp mnli qnli rte (default: from the run's results.json)")
    p.add_argument("--file", help="evaluate on this tsv (the task's GLUE columns) instead of the task's test set(s)")
    p.add_argument("--predict", help="write predictions to this tsv; with several test sets, one file per set")
    p.add_argument("--data-dir", help="a GLUE directory in the tsv layout (default: the run's, else "
                                      "$MINIPELT_GLUE_DIR, else the hub)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=parser(TrainConfig, "eval_batch_size"),
                   help=f"default: the run's, else {TRAIN_DEFAULTS['eval_batch_size']}")
    p.add_argument("--max-seq-length", type=parser(TrainConfig, "max_seq_length"),
                   help=f"default: the run's, else {TRAIN_DEFAULTS['max_seq_length']}")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="default: the run's, else fp32")
    p.add_argument("--textbook", action="store_true", help="run the model's textbook functions, no kernels "
                                                          "(the same metrics to rounding)")
    p.add_argument("--text", help="predict this one input and print its gate values (instead of a test set)")
    p.add_argument("--text-pair", help="the second text of a pair task's input, with --text")
    args = p.parse_args(argv)
    if args.text_pair is not None and args.text is None:
        p.error("--text-pair needs --text (the first text of the pair)")
    if args.text is not None and (args.file or args.predict):
        p.error("--text predicts one input: drop --file and --predict, or drop --text")
    return args


def locate(checkpoint: str) -> tuple[Path, dict]:
    """The checkpoint file, and the results.json of its run if --checkpoint named a run directory."""
    path = Path(checkpoint)
    if not path.is_dir():
        return path, {}
    results_file = path / runstate.RESULTS_FILE
    fix = "pass the checkpoint file itself with --model and --task"
    results = runstate.read_results(results_file, fix) if results_file.is_file() else {}
    return path / runstate.BEST_FILE, results


def check_method(path: Path, meta: dict, results: dict) -> None:
    """A checkpoint copied over another run's would otherwise be evaluated under the wrong name."""
    if not results:
        return
    recorded = PeltConfig.from_method(results["method"], **results["options"]["method_options"])
    saved = PeltConfig.from_json(meta["pelt"])
    if saved != recorded:
        raise ValueError(f"{path} holds a {saved.name} checkpoint, but results.json beside it records method "
                         f"{recorded.name}: the two files come from different runs; pass the checkpoint file "
                         f"itself with --model and --task")


def check_inputs(args, task: Task) -> None:
    """What can be checked before the model loads: --text against the task's input, --predict's folder."""
    if args.text is not None:
        texts = [args.text] + ([] if args.text_pair is None else [args.text_pair])
        if len(texts) != len(task.text_columns):
            fix = "give its second text with --text-pair" if len(texts) == 1 else "drop --text-pair"
            raise ValueError(f"{task.name} takes {len(task.text_columns)} text(s) per input "
                             f"({', '.join(task.text_columns)}), not {len(texts)}: {fix}")
        if any(not text.strip() for text in texts):
            raise ValueError("--text and --text-pair need some text: the input is empty")
    if args.predict and not Path(args.predict).parent.is_dir():
        raise ValueError(f"--predict {args.predict}: the folder {Path(args.predict).parent} does not exist; "
                         f"create it, or write the predictions elsewhere")


def splits_to_evaluate(args, task: Task, data_dir: str | None) -> dict[str, Split]:
    """{name: split} to evaluate: the --file, or every test set of the task that can be found."""
    if args.file:
        return {args.file: read_task_file(args.file, task)}
    found = {}
    for name in task.test_files:
        try:
            found[name] = load_task_split(task, name, data_dir)
        except FileNotFoundError as e:
            print(f"skipping test set {name}: {e}", file=sys.stderr)
    if not found:
        raise FileNotFoundError(f"none of {task.name}'s test sets was found: pass --data-dir, or --file")
    return found


def write_predictions(path: Path, predictions, task: Task) -> None:
    if task.is_regression:
        values = [f"{float(p):.6f}" for p in predictions]
    else:
        values = [task.label_names[int(p)] for p in predictions]
    path.write_text("index\tprediction\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))


def evaluate(args) -> dict:
    path, results = locate(args.checkpoint)
    meta = read_metadata(path)  # a missing or foreign checkpoint fails here, before the base weights load
    options = {**TRAIN_DEFAULTS, **results.get("options", {})}
    model_name, task_name = args.model or results.get("model"), args.task or results.get("task")
    if model_name is None or task_name is None:
        raise ValueError(f"pass --model and --task: {args.checkpoint} is not a run directory with a results.json "
                         f"that names them")
    if results and args.task is not None and get_task(args.task).name != results["task"]:
        raise ValueError(f"{args.checkpoint} is a {results['task']} run, not {args.task}: drop --task to evaluate it "
                         f"on {results['task']}, or pass its best.safetensors itself to score another task")
    task = get_task(args.task) if args.task else run_task(SimpleNamespace(**options))  # GLUE's, or your files'
    check_inputs(args, task)
    check_method(path, meta, results)
    device = resolve_device(args.device)
    model = model_from_checkpoint(path, model_name, meta).to(device)
    if model.num_labels != task.num_labels:
        raise ValueError(f"{path} has a head with {model.num_labels} outputs, but {task.name} has "
                         f"{task.num_labels}: pass the --task it was trained on")
    model_dir = resolve_model(model_name)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    tokenizer.check_fits(model.bert.config.vocab_size, model_dir)
    max_length = sequence_length(args.max_seq_length or options["max_seq_length"], model)
    report = {"checkpoint": str(path), "model": str(model_name), "task": task.name}
    if args.text is not None:
        one = encode_split(Split([args.text], None if args.text_pair is None else [args.text_pair], None),
                           tokenizer, max_length)
        return {**report, **predict_one(model, one, task, device, args.precision or options["precision"])}
    for i, (name, split) in enumerate(splits_to_evaluate(args, task, args.data_dir or options["data_dir"]).items()):
        if len(split) == 0:
            raise ValueError(f"the {task.name} set {name!r} has no examples (a header only?): add rows or pass "
                             f"another --file")
        if split.labels is None and not args.predict:
            raise ValueError(f"{name} has no {task.label_column!r} column, so there is nothing to score against: "
                             f"add the labels, or pass --predict OUT.tsv to write predictions only")
        encoded = encode_split(split, tokenizer, max_length)
        predictions = predict(model, encoded, args.batch_size or options["eval_batch_size"], device,
                              args.precision or options["precision"])[0]
        report[name] = None if split.labels is None else compute_metrics(task.metrics, predictions, split.labels)
        if args.predict:
            out = Path(args.predict)
            out = out if i == 0 else out.with_name(f"{out.stem}.{name}{out.suffix}")
            write_predictions(out, predictions, task)
            print(f"{len(predictions)} predictions for {name} written to {out}", file=sys.stderr)
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        with textbook(args.textbook):
            report = evaluate(args)
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
