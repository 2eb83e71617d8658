"""`vae finetune`'s options, made from TrainConfig's fields: name, type, default and help come from the field.

A field `foo_bar` is the option `--foo-bar` (or its `flag`, with its `short` alias); a field whose
flag is in capitals is a positional argument. `bool` fields are on/off flags (`--x`, or `--x/--no-x`
when the default is None, "the family's default"); `X | None` takes an X or nothing; a Literal
is a string that TrainConfig checks. For a None default with a family default, the help says both
values, read from config.FAMILY_DEFAULTS.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Annotated, Any, Callable, Optional

import typer

from vaecli.cli.common import FLAG
from vaecli.config import FAMILY_DEFAULTS, FAMILY_NAMES, ModelSettings, TrainConfig


def option_fields() -> list[dataclasses.Field]:
    """The TrainConfig fields that are options: the run's own first, then the model's (ModelSettings)."""
    model = {f.name for f in dataclasses.fields(ModelSettings)}
    fields = [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)]
    return [f for f in fields if f.name not in model] + [f for f in fields if f.name in model]


def _plain_type(annotation: Any) -> tuple[type, bool]:
    """(the click-level type, whether None is allowed) of a field annotation."""
    args = typing.get_args(annotation)
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        annotation = str
    return annotation, optional


def _family_default(name: str) -> str:
    values = {family: defaults[name] for family, defaults in FAMILY_DEFAULTS.items() if name in defaults}
    if not values:
        return ""
    shown = {family: ("on" if v is True else "off" if v is False else "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v))
             for family, v in values.items()}
    return " \\[default: " + ", ".join(f"{value} for {FAMILY_NAMES[family]}" for family, value in shown.items()) + "]"


def help_of(f: dataclasses.Field) -> str:
    """The option's help: the field's, and its family defaults when its default is None."""
    return f.metadata["help"] + (_family_default(f.name) if f.default is None else "")


def parameter(f: dataclasses.Field, hints: dict[str, Any]) -> inspect.Parameter:
    """The Typer parameter of one field."""
    kind, optional = _plain_type(hints[f.name])
    flag, short = f.metadata.get("flag"), f.metadata.get("short")
    default = f.default
    if flag is not None and flag.isupper():
        info: Any = typer.Argument(metavar=flag, help=help_of(f), show_default=False)
        return inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[kind, info])
    flag = flag or "--" + f.name.replace("_", "-")
    names = [flag] + ([short] if short else [])
    if kind is bool:
        names = [f"{flag}/--no-{flag[2:]}" if optional else flag] + ([short] if short else [])
        info = typer.Option(*names, metavar=FLAG, help=help_of(f), show_default=False)
    else:
        info = typer.Option(*names, help=help_of(f))
    annotation = Optional[kind] if optional else kind
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info])


def with_settings(command: Callable[..., Any], extra: list[inspect.Parameter]) -> Callable[..., Any]:
    """`command(**values)` with a signature of TrainConfig's options followed by `extra`, for Typer to read."""
    hints = typing.get_type_hints(TrainConfig)
    fields = option_fields()
    positional = [parameter(f, hints) for f in fields if (f.metadata.get("flag") or "").isupper()]
    options = [parameter(f, hints) for f in fields if not (f.metadata.get("flag") or "").isupper()]
    command.__signature__ = inspect.Signature(positional + options + extra)  # type: ignore[attr-defined]
    return command
