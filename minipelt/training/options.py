"""The command line of a config dataclass: each `option` field (model/fields.py) is a --flag.

    lr: float | None = option(None, "AdamW learning rate (unset: the method's)", minimum=0)

From the field alone, `add_arguments` writes its --flag (a new field is a new flag), and `parser`
refuses an impossible value naming the flag when the command line is parsed.
"""
import argparse
import typing
from dataclasses import MISSING, Field, fields

from minipelt.model.fields import flag, problem


def value_type(f: Field) -> type:
    """The field's type without its '| None': int, float, str or bool."""
    return next((t for t in typing.get_args(f.type) if t is not type(None)), f.type)


def parser(config_class, name: str):
    """The argparse `type` of an option: read the text, then refuse a value out of range."""
    f = next(f for f in fields(config_class) if f.name == name)

    def read(text: str):
        value = (f.metadata["parse"] or value_type(f))(text)
        if message := problem(f, value):
            raise argparse.ArgumentTypeError(message)
        return value

    read.__name__ = value_type(f).__name__  # argparse's "invalid int value: 'x'"
    return read


def add_arguments(parser_or_group, config_class, skip=(), unset_by_default: bool = False) -> None:
    """A --flag for every option field of `config_class` but those in `skip`.

    unset_by_default: every flag defaults to None, so that only what the user gave is recorded
    (e.g. a run's method options); the help still names the config's default."""
    for f in fields(config_class):
        if "help" not in f.metadata or f.name in skip:
            continue
        shown = None if f.default is MISSING or value_type(f) is bool else f.default  # a switch's help says it
        help = f.metadata["help"] + ("" if shown is None else f" (default: {shown})")
        default = None if unset_by_default or f.default is MISSING else f.default
        kind = dict(action=argparse.BooleanOptionalAction) if value_type(f) is bool else dict(
            type=parser(config_class, f.name), required=f.default is MISSING, choices=f.metadata["choices"],
            nargs=f.metadata.get("nargs"))
        parser_or_group.add_argument(flag(f.name), default=default, help=help, **kind)
