"""The project's one settings layer: every command's options are declared here as data, once per component.

A :class:`Setting` is a name, an environment variable, a type, a default and a help text. A :class:`SettingGroup`
holds a component's settings and derives each variable from its prefix (``NER_EXPORT_`` + ``OPSET``), except for the
few settings that several components share, which name their variable themselves (``NER_TRITON_URL``: where Triton
is). From a group come the command's ``--help`` (every flag shows its variable and default), its parsed values (the
command line wins over the environment, which wins over the default) and the option tables of the docs
(``python -m ner_client.settings docs/*.md`` rewrites them; ``--check`` fails when one is stale).

It lives in the client distribution because the ``ner-client`` command needs it and that distribution installs on its
own; the server's components import it from here. Only commands read the environment: a library given a group gets
its values from its caller.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def boolean(text: str | bool) -> bool:
    """The one boolean parser: 1/true/yes/on and 0/false/no/off, any case."""
    if isinstance(text, bool):
        return text
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not a boolean: {text!r} (use one of {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})")


def comma_list(text: str | Sequence[str]) -> tuple[str, ...]:
    """``a,b , c`` → ``("a", "b", "c")``; blanks dropped."""
    parts = text.split(",") if isinstance(text, str) else text
    return tuple(part.strip() for part in parts if part.strip())


def word_list(text: str | Sequence[str]) -> tuple[str, ...]:
    """Words separated by spaces or commas (``"ner ner_fp32"``)."""
    parts = re.split(r"[\s,]+", text) if isinstance(text, str) else text
    return tuple(part for part in parts if part)


def _number(kind: type, text: str | int | float) -> int | float:
    """``int(text)`` or ``float(text)``, failing with what was expected rather than Python's "invalid literal"."""
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, not {text!r}") from None


def positive_int(text: str | int) -> int:
    value = _number(int, text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str | int) -> int:
    value = _number(int, text)
    if value < 0:
        raise ValueError(f"must be at least 0, not {value}")
    return value


def positive_float(text: str | float) -> float:
    value = _number(float, text)
    if not value > 0:
        raise ValueError(f"must be more than 0, not {text}")
    return value


def count_or_auto(text: str | int | None) -> int | None:
    """A positive count, or ``auto`` (None: the component decides)."""
    if text is None or text == "auto":
        return None
    return positive_int(text)


TYPE_NAMES: dict[Callable, str] = {
    str: "text", int: "integer", float: "number", Path: "path", boolean: "boolean", comma_list: "comma list",
    word_list: "list", positive_int: "integer ≥ 1", non_negative_int: "integer ≥ 0", count_or_auto: "integer or auto",
    positive_float: "number > 0",
}


def named_type(name: str) -> Callable[[Callable], Callable]:
    """Names a component's own value parser in the option tables (``@named_type("list")``)."""

    def mark(parse: Callable) -> Callable:
        parse.type_name = name
        return parse

    return mark


def type_name(parse: Callable) -> str:
    return TYPE_NAMES.get(parse) or getattr(parse, "type_name", "text")


@dataclass(frozen=True)
class Setting:
    """One option of a command.

    ``name`` is the attribute the parsed namespace gets; the flag is ``--name-with-dashes`` (``--no-name`` too for a
    boolean), the environment variable the group's prefix + ``NAME`` unless ``env`` names one. ``positional``: given
    as the command's argument rather than a flag. ``shown``: how the default reads when its value says it badly.
    ``short``: a one-letter flag besides the long one (``-f``).
    """

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    choices: tuple | None = None
    env: str | None = None
    metavar: str | None = None
    positional: bool = False
    required: bool = False
    shown: str | None = None
    short: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.short, self.flag) if self.short else (self.flag,)

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, tuple):
            return ",".join(map(str, self.default)) or "none"
        return str(self.default)

    def parse(self, raw: str) -> Any:
        value = _number(self.type, raw) if self.type in (int, float) else self.type(raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(map(str, self.choices))}, not {raw!r}")
        return value

    def argument_type(self) -> Callable[[str], Any]:
        """``parse`` for argparse, whose message then carries the reason: "argument --threads: must be at least 1"."""

        def convert(raw: str) -> Any:
            try:
                return self.parse(raw)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from err

        convert.__name__ = type_name(self.type)
        return convert


class _Overrides(argparse.Action):
    """Stores the value of a setting that excludes others, and puts them back to their declared defaults: given on
    the command line, it wins over their environment variables as it does over its own."""

    def __init__(self, option_strings, dest, others: Mapping[str, Any], **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.others = others

    def __call__(self, parser, namespace, values, option_string=None):
        for name, default in self.others.items():
            setattr(namespace, name, default)
        setattr(namespace, self.dest, values)


@dataclass(frozen=True)
class SettingGroup:
    """A component's settings under one variable prefix (``NER_EXPORT_``).

    ``exclusive``: sets of settings of which the command line takes at most one (``("model", "precision")``); the
    one given there wins over the environment variables of the others.
    """

    prefix: str
    settings: tuple[Setting, ...]
    title: str = ""
    exclusive: tuple[tuple[str, ...], ...] = ()
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        by_name = {s.name: s for s in self.settings}
        if len(by_name) != len(self.settings):
            raise ValueError(f"{self.prefix}: a setting name is declared twice")
        for members in self.exclusive:
            for name in members:
                if name not in by_name or by_name[name].positional or by_name[name].type is boolean:
                    raise ValueError(f"{self.prefix}: an exclusive set takes flags with values, not {name!r}")
        object.__setattr__(self, "_by_name", by_name)

    def __getitem__(self, name: str) -> Setting:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.settings)

    def env_name(self, setting: Setting) -> str:
        return setting.env or self.prefix + setting.name.upper()

    def defaults(self, **overrides) -> argparse.Namespace:
        """The declared defaults (no environment), for code that calls a command's logic directly."""
        values = {s.name: s.default for s in self.settings}
        unknown = set(overrides) - set(values)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        return argparse.Namespace(**{**values, **overrides})

    def select(self, names: Iterable[str] | None) -> list[Setting]:
        return list(self.settings) if names is None else [self[name] for name in names]

    # ------------------------------------------------------------------ argparse

    def add_to(self, parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
               environ: Mapping[str, str] | None = None) -> None:
        """Adds the settings (all, or ``names``) to ``parser``, their defaults read from ``environ``."""
        environ = os.environ if environ is None else environ
        selected = self.select(names)
        exclusive: dict[str, tuple[Any, dict[str, Any]]] = {}  # name → (argparse group, the others' defaults)
        for members in self.exclusive:
            present = [name for name in members if self[name] in selected]
            if len(present) > 1:
                group = parser.add_mutually_exclusive_group()
                for name in present:
                    exclusive[name] = (group, {other: self[other].default for other in present if other != name})
        for setting in selected:
            variable = self.env_name(setting)
            default = setting.default
            raw = environ.get(variable)
            if raw is not None and raw != "":
                try:
                    default = setting.parse(raw)
                except ValueError as err:
                    parser.error(f"{variable}={raw!r}: {err}")
            help_text = f"{setting.help} [{variable}; default: {setting.default_text()}]".replace("%", "%%")
            kwargs: dict[str, Any] = {"default": default, "help": help_text}
            if setting.metavar:
                kwargs["metavar"] = setting.metavar
            if setting.positional:
                parser.add_argument(setting.name, nargs="?", type=setting.argument_type(), **kwargs)
            elif setting.type is boolean:
                parser.add_argument(*setting.flags, dest=setting.name, action=argparse.BooleanOptionalAction, **kwargs)
            elif setting.name in exclusive:
                group, others = exclusive[setting.name]
                group.add_argument(*setting.flags, dest=setting.name, type=setting.argument_type(), action=_Overrides,
                                   others=others, **kwargs)
            else:
                parser.add_argument(*setting.flags, dest=setting.name, type=setting.argument_type(), **kwargs)

    def check_required(self, parser: argparse.ArgumentParser, args: argparse.Namespace,
                       names: Iterable[str] | None = None) -> None:
        for setting in self.select(names):
            if setting.required and getattr(args, setting.name, None) in (None, ""):
                how = setting.name.upper() if setting.positional else setting.flag
                parser.error(f"{how} is required (or {self.env_name(setting)})")

    def parser(self, prog: str, description: str | None = None, names: Iterable[str] | None = None,
               environ: Mapping[str, str] | None = None, **kwargs) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=prog, description=description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        self.add_to(parser, names, environ)
        return parser

    def parse(self, argv: Sequence[str] | None, prog: str, description: str | None = None,
              environ: Mapping[str, str] | None = None, **kwargs) -> argparse.Namespace:
        parser = self.parser(prog, description, environ=environ, **kwargs)
        args = parser.parse_args(argv)
        self.check_required(parser, args)
        return args

    # ------------------------------------------------------------------ docs

    def markdown(self) -> str:
        """The option table the docs show for this group."""
        rows = ["| flag | environment variable | type | default | meaning |", "|---|---|---|---|---|"]
        for s in self.settings:
            flag = s.name.upper() if s.positional else ", ".join(s.flags + ((f"--no-{s.flag[2:]}",) if s.type is boolean
                                                                             else ()))
            kind = "one of " + ", ".join(map(str, s.choices)) if s.choices else type_name(s.type)
            cell = s.help.replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{flag}` | `{self.env_name(s)}` | {kind} | `{s.default_text()}` | {cell} |")
        return "\n".join(rows) + "\n"


# Settings several commands share, under one variable each.
TRITON_URL = Setting(
    "url", None, "where Triton is: host:port of its gRPC endpoint (its HTTP one with protocol http); a grpc://, "
    "http:// or https:// scheme sets the protocol", env="NER_TRITON_URL", shown="127.0.0.1:8001 (gRPC), "
    "127.0.0.1:8000 (HTTP)")
TRITON_PROTOCOL = Setting("protocol", None, "grpc or http; default: the URL's scheme, else grpc",
                          choices=("grpc", "http"), env="NER_TRITON_PROTOCOL", shown="grpc")


# ------------------------------------------------------------------ generated option tables in the docs

BLOCK = re.compile(r"(<!-- options: (?P<target>[\w.]+:\w+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S)


def load_group(target: str) -> SettingGroup:
    module, _, attribute = target.partition(":")
    group = getattr(importlib.import_module(module), attribute)
    if not isinstance(group, SettingGroup):
        raise TypeError(f"{target} is not a SettingGroup")
    return group


def render_docs(text: str) -> str:
    """``text`` with every ``<!-- options: module:GROUP -->`` block rewritten from its group."""
    return BLOCK.sub(lambda m: m.group(1) + load_group(m.group("target")).markdown() + m.group(4), text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ner_client.settings",
        description="Rewrite the option tables in markdown files from the settings they name "
                    "(<!-- options: module:GROUP --> ... <!-- /options -->).")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        rendered = render_docs(text)
        if rendered != text:
            stale.append(path)
            if not args.check:
                path.write_text(rendered, encoding="utf-8")
    verb = "stale" if args.check else "rewrote"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    # Run with -m this module is __main__, a second copy: the groups named in the docs are made of the classes of
    # ner_client.settings, which its main() checks against.
    from ner_client.settings import main as checked_main

    sys.exit(checked_main())
