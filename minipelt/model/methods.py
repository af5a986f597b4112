"""The PELT methods: what each one turns on, its training defaults, and the one predicate that
decides what trains and is saved.

Methods (the paper's, with the defaults of the paper and its official code):

    finetune     every parameter trains (the baseline)
    bitfit       every bias of the encoder and pooler (Zaken et al., 2021)
    adapter      Pfeiffer output adapter, reduction factor 16            adapter.py
    prefix       prefix-tuning, L = 10, MLP 512 wide                     prefix.py
    lora         LoRA on query and value, r = 8, alpha = 16              lora.py
    unipelt-ap   gated adapter + gated prefix                            (UniPELT AP)
    unipelt      gated adapter + gated prefix + gated LoRA               (UniPELT APL)

`METHODS` is the registry: a new method is one entry there. Any combination of parts joins
with '+', e.g. 'adapter+lora'; `gated` turns the UniPELT gates on or off for any of them.
Under every method the task head (`classifier`) trains too.
"""
import json
from dataclasses import asdict, dataclass, replace

from minipelt.model.fields import check, option

PARTS = ("finetune", "bitfit", "adapter", "prefix", "lora")  # the switches of PeltConfig


@dataclass(frozen=True)
class Method:
    parts: tuple[str, ...]  # the PARTS it turns on, in PARTS order
    title: str  # as the paper's tables name it
    lr: float  # training defaults: from the dev sweep in docs/protocol.md
    prefix_lr: float | None = None  # the prefix MLP's own rate; None: lr
    epochs: int = 30
    gated: bool = False  # UniPELT's gates on by default


METHODS = {  # in the order of the paper's tables
    "finetune": Method(("finetune",), "Fine-tuning", lr=5e-5),
    "bitfit": Method(("bitfit",), "BitFit", lr=5e-3),
    "adapter": Method(("adapter",), "Adapter", lr=3e-3),
    "prefix": Method(("prefix",), "Prefix", lr=1e-3),
    "lora": Method(("lora",), "LoRA", lr=1e-3),
    "unipelt-ap": Method(("adapter", "prefix"), "UniPELT (AP)", lr=1e-3, gated=True),
    "unipelt": Method(("adapter", "prefix", "lora"), "UniPELT (APL)", lr=1e-3, gated=True),
}


def get_method(name: str) -> Method:
    """A method of the registry, or a '+' combination of parts (ungated, with UniPELT's training defaults)."""
    if name in METHODS:
        return METHODS[name]
    parts = tuple(p for p in PARTS if p in name.split("+"))
    if not name or sorted(parts) != sorted(name.split("+")):
        raise ValueError(f"unknown method {name!r}: use one of {', '.join(METHODS)}, or a '+' combination of "
                         f"{', '.join(PARTS)} such as 'adapter+lora'")
    return replace(METHODS["unipelt"], parts=parts, title=name, gated=False)


@dataclass(frozen=True)
class PeltConfig:
    finetune: bool = False
    bitfit: bool = False
    adapter: bool = False
    prefix: bool = False
    lora: bool = False
    gated: bool = option(False, "UniPELT's gates on every part that has one (default: on for unipelt-ap, "
                                "unipelt)")
    reduction_factor: int = option(16, "adapter bottleneck = hidden size / reduction factor", minimum=1)
    prefix_length: int = option(10, "prefix length L", minimum=1)
    prefix_hidden: int = option(512, "width of the prefix reparametrisation MLP", minimum=1)
    prefix_gate: str = option("attention", "gate form: 'attention' (exact at G_P = 0) or the official 'kv'",
                              choices=("attention", "kv"))
    lora_r: int = option(8, "LoRA rank r", minimum=1)
    lora_alpha: float = option(16.0, "LoRA alpha; ungated scaling alpha / r", minimum=0)

    def __post_init__(self):
        check(self)
        if self.finetune and (self.bitfit or self.adapter or self.prefix or self.lora):
            raise ValueError("finetune trains every parameter already: it combines with no other method")

    @classmethod
    def from_method(cls, method: str, **options) -> "PeltConfig":
        """'unipelt', 'lora', 'adapter+lora', ... plus field overrides (e.g. gated=False, lora_r=4)."""
        m = get_method(method)
        options = {k: v for k, v in options.items() if v is not None}
        options.setdefault("gated", m.gated)
        return cls(**{p: True for p in m.parts}, **options)

    @property
    def name(self) -> str:
        parts = tuple(p for p in PARTS if getattr(self, p))
        named = [name for name, m in METHODS.items() if (m.parts, m.gated) == (parts, self.gated)]
        return named[0] if named else ("+".join(parts) or "frozen") + ("(gated)" if self.gated else "")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PeltConfig":
        return cls(**json.loads(text))


# Submodule name -> the kind of its parameters. A parameter is of the kind of its innermost named
# submodule (an adapter's gate is a gate); one under none of them is a bias or the frozen base.
KINDS = {"adapter": "adapter", "prefix": "prefix", "lora_A": "lora", "lora_B": "lora",
         "gate": "gates", "prefix_gate": "gates", "classifier": "head"}
PELT_KINDS = ("adapter", "prefix", "lora", "gates")


def parameter_kind(name: str) -> str:
    """adapter, prefix, lora, gates, head, bias or base, e.g. 'bert.encoder.layer.0.adapter.up.weight' -> adapter."""
    kinds = [KINDS[part] for part in name.split(".") if part in KINDS]
    return kinds[-1] if kinds else "bias" if name.endswith(".bias") else "base"


def is_pelt_parameter(name: str) -> bool:
    """A parameter of a PELT submodule (adapter, prefix, LoRA A/B, gate), not of the base BERT."""
    return parameter_kind(name) in PELT_KINDS


def is_trainable(name: str, pelt: PeltConfig) -> bool:
    """THE predicate: trains under `pelt` iff saved by `trainable_state_dict`.

    `name` is a parameter name of a SequenceClassifier; the task head is randomly initialised, so it
    always trains.
    """
    kind = parameter_kind(name)
    return pelt.finetune or kind in (*PELT_KINDS, "head") or (pelt.bitfit and kind == "bias")


def mark_trainable(model, pelt: PeltConfig) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, pelt))


def trainable_state_dict(model, pelt: PeltConfig) -> dict:
    return {n: p.detach() for n, p in model.named_parameters() if is_trainable(n, pelt)}
