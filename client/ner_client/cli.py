"""``ner-client`` / ``python -m ner_client``: entities of texts given as arguments, in a file or on stdin (one text
per line), as JSON lines or as the text with its entities highlighted."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import IO, Iterator, Mapping

from ._core import MODEL_FOR_PRECISION, Text
from .aio import AsyncNerClient
from .entity import Entity
from .errors import (
    InputRejected, ModelNotReady, NerError, RequestTimeout, ServerUnavailable, one_line, relabel,
)
from .settings import (
    TRITON_PROTOCOL, TRITON_URL, Setting, SettingGroup, boolean, positive_float, positive_int,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_REJECTED, EXIT_NOT_READY, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130

BLOCK_TEXTS = 1024  # texts read ahead and sent (in requests of --batch-size) before their answers are written
BLOCK_CHARS = 2_000_000
PROGRESS_MIN_LINES = 256  # a file of at least this many lines gets a progress bar on a terminal

SETTINGS = SettingGroup("NER_CLIENT_", (
    Setting("file", None, "a UTF-8 file of texts, one per line (\"-\": stdin); texts given as arguments win over "
            "the variable", metavar="PATH", short="-f", shown="stdin, when no TEXT is given"),
    TRITON_URL,
    TRITON_PROTOCOL,
    Setting("model", None, "the served ensemble; not with --precision", metavar="NAME", shown="ner"),
    Setting("precision", None, "the ensemble by its precision: int8 → ner, fp32 → ner_fp32; not with --model",
            choices=tuple(sorted(MODEL_FOR_PRECISION)), metavar="fp32|int8"),
    Setting("batch_size", None, "texts per request (at most the server's max_texts_per_request)",
            type=positive_int, metavar="N", shown="the server's max_texts_per_request"),
    Setting("concurrency", 4, "requests in flight", type=positive_int, metavar="N"),
    Setting("timeout", 30.0, "seconds per request, retries included", type=positive_float, metavar="SECONDS"),
    Setting("retries", 3, "most tries per request when the server is unreachable", type=positive_int, metavar="N"),
    Setting("format", None, "jsonl: {\"text\", \"entities\"} per line; pretty: the text with its entities highlighted",
            choices=("jsonl", "pretty"), metavar="jsonl|pretty", shown="pretty on a terminal, else jsonl"),
    Setting("color", "auto", "colours in pretty output (NO_COLOR is honoured)", choices=("auto", "always", "never"),
            metavar="auto|always|never"),
    Setting("progress", None, "a progress bar on stderr", type=boolean,
            shown=f"for a --file of at least {PROGRESS_MIN_LINES} lines on a terminal"),
), title="ner-client", exclusive=(("model", "precision"),))

EPILOG = """\
Each text is one argument, or one line of --file (\"-\" for stdin), or one line of stdin when neither is given.
Exit codes: 0 ok, 1 other server error, 2 usage, 3 server unavailable, 4 input rejected, 5 model not ready,
  6 timeout, 130 interrupted.
"""


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    parser = SETTINGS.parser("ner-client", "Named entities of Chinese texts, from the NER service on Triton.",
                             environ=environ, epilog=EPILOG)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to tag, one per argument")
    parser.add_argument("--info", action="store_true",
                        help="print the served model's name, version, model hash, labels and limits as JSON, and "
                             "exit")
    return parser


def parse_args(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    if args.texts and args.file is not None:
        if args.file != parser.get_default("file"):
            parser.error("give texts as arguments or --file, not both")
        args.file = None  # texts on the command line win over NER_CLIENT_FILE
    return args


# -- input ------------------------------------------------------------------------------------------------------

def from_line(raw: bytes) -> Text:
    """A line without its line break; text when it is UTF-8, else the bytes (for the server to reject)."""
    raw = raw.rstrip(b"\n")
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def from_argument(arg: str) -> Text:
    """An argument as given: the bytes when they were not UTF-8 (Python hands them over as lone surrogates)."""
    try:
        arg.encode("utf-8")
        return arg
    except UnicodeEncodeError:
        return os.fsencode(arg)


def lines_of(stream: IO[bytes]) -> Iterator[Text]:
    first = True
    for raw in stream:
        if first and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        first = False
        yield from_line(raw)


def count_lines(path: str) -> int | None:
    try:
        n, last = 0, b"\n"
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                n += block.count(b"\n")
                last = block[-1:]
        return n + (last != b"\n")
    except OSError:
        return None


@dataclass
class Source:
    texts: Iterator[Text]
    what: str  # "line" or "argument", for messages
    interactive: bool
    total: int | None


def open_source(args: argparse.Namespace) -> Source:
    if args.texts:
        return Source(iter([from_argument(t) for t in args.texts]), "argument", False, len(args.texts))
    if args.file and args.file != "-":
        stream = open(args.file, "rb")  # closed at exit
        return Source(lines_of(stream), "line", False, count_lines(args.file))
    stdin = sys.stdin.buffer
    return Source(lines_of(stdin), "line", sys.stdin.isatty(), None)


def blocks(source: Source) -> Iterator[list[Text]]:
    """Texts in blocks; one text at a time when someone types them."""
    block: list[Text] = []
    chars = 0
    for text in source.texts:
        block.append(text)
        chars += len(text)
        if source.interactive or len(block) >= BLOCK_TEXTS or chars >= BLOCK_CHARS:
            yield block
            block, chars = [], 0
    if block:
        yield block


# -- output -----------------------------------------------------------------------------------------------------

COLOURS = {"PER": "31", "LOC": "32", "ORG": "34"}
OTHER_COLOURS = ("35", "33", "36")
# Control characters would move the cursor or restyle the terminal: shown as their Unicode pictures instead.
VISIBLE = {**{c: 0x2400 + c for c in range(0x20) if c != 0x09}, 0x7F: 0x2421,
           **{c: 0xFFFD for c in range(0x80, 0xA0)}}


def colour_of(entity_type: str) -> str:
    if entity_type in COLOURS:
        return COLOURS[entity_type]
    return OTHER_COLOURS[sum(map(ord, entity_type)) % len(OTHER_COLOURS)]


def pretty(text: Text, entities: list[Entity], colour: bool) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out, at = [], 0
    for e in sorted(entities, key=lambda e: (e.start, e.end)):
        if e.start < at:
            continue
        out.append(text[at:e.start].translate(VISIBLE))
        span = text[e.start:e.end].translate(VISIBLE)
        if colour:
            c = colour_of(e.type)
            out.append(f"\x1b[1;{c}m{span}\x1b[0m\x1b[2;{c}m[{e.type}]\x1b[0m")
        else:
            out.append(f"[{span}|{e.type}]")
        at = e.end
    out.append(text[at:].translate(VISIBLE))
    return "".join(out)


def jsonl(text: Text, entities: list[Entity]) -> bytes:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    record = {"text": text, "entities": [e.to_dict() for e in entities]}
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def use_colour(args: argparse.Namespace) -> bool:
    if args.color == "always":
        return True
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


# -- running ----------------------------------------------------------------------------------------------------

def fail(code: int, message: str) -> int:
    print(f"ner-client: {one_line(message)}", file=sys.stderr, flush=True)
    return code


def exit_code(err: NerError) -> int:
    for kind, code in ((InputRejected, EXIT_REJECTED), (ServerUnavailable, EXIT_UNAVAILABLE),
                       (ModelNotReady, EXIT_NOT_READY), (RequestTimeout, EXIT_TIMEOUT)):
        if isinstance(err, kind):
            return code
    return EXIT_ERROR


async def run(args: argparse.Namespace) -> int:
    client = AsyncNerClient(args.url, args.protocol, args.model, precision=args.precision, timeout=args.timeout,
                            retries=args.retries, concurrency=args.concurrency)
    async with client:
        if args.info:
            info = (await client.model_info()).to_dict()
            sys.stdout.buffer.write(json.dumps(info, ensure_ascii=False).encode("utf-8") + b"\n")
            return EXIT_OK
        source = open_source(args)
        fmt = args.format or ("pretty" if sys.stdout.isatty() else "jsonl")
        colour = fmt == "pretty" and use_colour(args)
        show = args.progress
        if show is None:
            show = (not source.interactive and args.file not in (None, "-") and sys.stderr.isatty()
                    and (source.total or 0) >= PROGRESS_MIN_LINES)
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=source.total, unit="text", file=sys.stderr, dynamic_ncols=True, leave=False)
        done = 0
        try:
            for block in blocks(source):
                try:
                    results = await client.extract_many(block, args.batch_size,
                                                        progress=bar.update if bar is not None else None)
                except InputRejected as err:
                    if err.index is None:
                        raise
                    name = f"{source.what} {done + err.index + 1}"
                    if err.request_index is not None:
                        raise InputRejected(relabel(err.reason, err.request_index, name)) from err
                    raise InputRejected(f"{name}: {err.reason}") from err
                if fmt == "jsonl":
                    sys.stdout.buffer.write(b"".join(jsonl(t, r) for t, r in zip(block, results)))
                    sys.stdout.buffer.flush()
                else:
                    sys.stdout.write("".join(pretty(t, r, colour) + "\n" for t, r in zip(block, results)))
                    sys.stdout.flush()
                done += len(block)
        finally:
            if bar is not None:
                bar.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass
    try:
        return asyncio.run(run(args))
    except InputRejected as err:
        return fail(EXIT_REJECTED, f"input rejected: {err.reason}")
    except NerError as err:
        return fail(exit_code(err), str(err))
    except ValueError as err:  # an inconsistent URL / protocol / model / precision
        return fail(EXIT_USAGE, str(err))
    except OSError as err:  # the input file
        if isinstance(err, BrokenPipeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_ERROR
        return fail(EXIT_USAGE, f"{getattr(err, 'filename', None) or ''}: {err.strerror or err}".lstrip(": "))
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
