"""Screen `vae finetune` settings against the default, side by side: each variant is the default with some settings changed.

    python benchmarks/settings_screen.py --train ../shared/data/wordnet/train.txt --steps 460 --seeds 42,43 \\
        --variants "default;pooling=attention;layers=mix"

`--variants` is a `;`-separated list; each is `default` or space-separated `field=value` pairs, the fields those of
`vaecli.config.TrainConfig` (an option's name with `_` for `-`: `pooling=attention pool_queries=8`), their values read as
the field's default would be (a number, on/off for a switch, else text). A variant's `phase1_steps` replaces `--steps` for it:
`batch_size=8 phase1_steps=787` is batches of 8 at the minutes of 460 of 16 where a step of 8 runs at 1.71x the steps/s
(settings_speed.py measures the ratio). Each (variant, seed) trains `--steps` phase-1 steps of
16 on `--train` in a fresh process, one after the other, and is evaluated as `vae evaluate --iw-samples 1 --samples 20` on
the first `--limit` sentences of `--test` (benchmarks/lever_screen.py). Run it on an idle machine.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from lever_screen import arguments, table, train_and_evaluate  # benchmarks/ is on sys.path when a benchmark runs as a script

SCRIPT = Path(sys.argv[0]).name
"""The benchmark that was run (this one, or settings_speed.py, which reads its variants here), for its messages."""


def settings_of(variant: str) -> dict[str, object]:
    """`field=value ...` -> TrainConfig keyword arguments; `default` -> none. Exits with one line on an unknown field or value."""
    from vaecli.config import TrainConfig

    if variant.strip() == "default":
        return {}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out: dict[str, object] = {}
    for pair in variant.split():
        name, sep, text = pair.partition("=")
        if not sep or name not in fields:
            sys.exit(f"{SCRIPT}: {pair!r} is not field=value with a field of TrainConfig")
        out[name] = parse(text, fields[name].type)
    return out


def parse(text: str, kind: object) -> object:
    """A value as its field's declared type reads it: bool from on/off/true/false, int, float, else the text itself."""
    kind = str(kind)
    if "bool" in kind:
        if text.lower() not in ("on", "off", "true", "false"):
            sys.exit(f"{SCRIPT}: {text!r} is not on/off")
        return text.lower() in ("on", "true")
    for number in (int, float):
        if number.__name__ in kind:
            try:
                return number(text)
            except ValueError:
                continue
    return text


def check(variants: list[str], train: str) -> None:
    """Every variant read and its settings checked before the first one trains: a typo in the last one exits at once."""
    from vaecli.config import TrainConfig
    from vaecli.errors import ConfigError

    for variant in variants:
        try:
            TrainConfig(train_file=train, **settings_of(variant))
        except ConfigError as err:
            sys.exit(f"{SCRIPT}: {variant!r}: {err}")


def main() -> None:
    args = arguments(__doc__, "variants", "default")
    if args.child:
        train_and_evaluate(args, **settings_of(args.child[0]))
        return
    check(args.variants.split(";"), args.train)
    table(__file__, args, "settings", lambda variant: variant, sep=";")


if __name__ == "__main__":
    main()
