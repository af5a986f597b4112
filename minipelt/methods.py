"""Which PELT methods a model carries, and the one predicate that decides what trains and is saved.

Methods (defaults from the paper and its official code):

    finetune     every parameter trains (the baseline)
    bitfit       every bias of the encoder and pooler (Zaken et al., 2021)
    adapter      Pfeiffer output adapter, reduction factor 16            adapter.py
    prefix       prefix-tuning, L = 10, MLP 512 wide                     prefix.py
    lora         LoRA on query and value, r = 8, alpha = 16              lora.py
    unipelt-ap   gated adapter + gated prefix                            (UniPELT AP)
    unipelt      gated adapter + gated prefix + gated LoRA               (UniPELT APL)

Any combination joins with '+', e.g. 'adapter+lora'; `gated` turns the UniPELT gates on or
off for any of them. Under every method the task head (`classifier`) trains too.
"""
import json
from dataclasses import asdict, dataclass

PELT_PARTS = ("adapter", "prefix", "lora_A", "lora_B", "gate", "prefix_gate")  # names of PELT submodules
SINGLE = ("finetune", "bitfit", "adapter", "prefix", "lora")
NAMED = {"unipelt-ap": "adapter+prefix", "unipelt": "adapter+prefix+lora"}  # gated by default


@dataclass(frozen=True)
class PeltConfig:
    finetune: bool = False
    bitfit: bool = False
    adapter: bool = False
    prefix: bool = False
    lora: bool = False
    gated: bool = False  # UniPELT gates on every method above that has one
    reduction_factor: int = 16  # adapter bottleneck = H / reduction_factor
    prefix_length: int = 10  # L
    prefix_hidden: int = 512  # width of the prefix reparametrisation MLP
    prefix_gate: str = "attention"  # "attention" (exact at G_P = 0) or "kv" (official)
    lora_r: int = 8
    lora_alpha: float = 16.0  # ungated scaling alpha / r = 2

    def __post_init__(self):
        if self.finetune and (self.bitfit or self.adapter or self.prefix or self.lora):
            raise ValueError("finetune trains every parameter already: it combines with no other method")
        if self.prefix_gate not in ("attention", "kv"):
            raise ValueError(f"prefix_gate must be 'attention' or 'kv', not {self.prefix_gate!r}")

    @classmethod
    def from_method(cls, method: str, **options) -> "PeltConfig":
        """'unipelt', 'lora', 'adapter+lora', ... plus field overrides (e.g. gated=False, lora_r=4)."""
        parts = NAMED.get(method, method).split("+")
        unknown = [p for p in parts if p not in SINGLE]
        if unknown or not method:
            raise ValueError(f"unknown method {method!r}: use one of {', '.join(SINGLE + tuple(NAMED))} "
                             f"or a '+' combination such as 'adapter+lora'")
        options = {k: v for k, v in options.items() if v is not None}
        options.setdefault("gated", method in NAMED)
        return cls(**{p: True for p in parts}, **options)

    @property
    def name(self) -> str:
        parts = "+".join(p for p in SINGLE if getattr(self, p)) or "frozen"
        named = {v: k for k, v in NAMED.items()}.get(parts)
        return named if named and self.gated else parts + ("(gated)" if self.gated else "")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PeltConfig":
        return cls(**json.loads(text))


def is_pelt_parameter(name: str) -> bool:
    """A parameter of a PELT submodule (adapter, prefix, LoRA A/B, gate), not of the base BERT."""
    return any(p in name.split(".") for p in PELT_PARTS)


def is_trainable(name: str, pelt: PeltConfig) -> bool:
    """THE predicate: trains under `pelt` iff saved by `trainable_state_dict`.

    `name` is a parameter name of a SequenceClassifier, e.g. 'bert.encoder.layer.0.adapter.up.weight'.
    """
    parts = name.split(".")
    return (
        pelt.finetune
        or parts[0] == "classifier"  # the task head is randomly initialised: always trains
        or is_pelt_parameter(name)
        or (pelt.bitfit and parts[-1] == "bias")
    )


def mark_trainable(model, pelt: PeltConfig) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, pelt))


def trainable_state_dict(model, pelt: PeltConfig) -> dict:
    return {n: p.detach() for n, p in model.named_parameters() if is_trainable(n, pelt)}


def parameter_kind(name: str) -> str:
    """Which line of the parameter report a parameter belongs to."""
    parts = name.split(".")
    for kind, names in (("gates", ("gate", "prefix_gate")), ("adapter", ("adapter",)), ("prefix", ("prefix",)),
                        ("lora", ("lora_A", "lora_B")), ("head", ("classifier",))):
        if any(n in parts for n in names):
            return kind
    return "bias" if parts[-1] == "bias" else "base"
