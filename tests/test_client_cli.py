"""The command line (``python -m ner_client`` / ``ner-client``) as a subprocess against a real tritonserver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.model_hash import written_hash
from ner_client.cli import SETTINGS
from serving.server import free_port
from texts import AWKWARD_TEXTS, expected_entities

pytestmark = pytest.mark.server

GOOD = "张三在北京的清华大学读书。"
LINES = [t for t in AWKWARD_TEXTS if "\n" not in t and "\r" not in t]  # texts that fit on one line
VARIABLES = ("NO_COLOR", *(SETTINGS.env_name(setting) for setting in SETTINGS))


def ner_client(*args: str, stdin: bytes | None = None, env: dict | None = None, entry_point: bool = False):
    environment = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    environment.update(env or {})
    command = [str(Path(sys.executable).with_name("ner-client"))] if entry_point else [sys.executable, "-m",
                                                                                        "ner_client"]
    return subprocess.run([*command, *args], input=stdin if stdin is not None else b"", capture_output=True,
                          env=environment, timeout=300)


def records(result) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]


def triples(entities: list[dict]) -> list[tuple]:
    return [(e["type"], e["start"], e["end"]) for e in entities]


def one_line_message(result) -> str:
    message = result.stderr.decode("utf-8", errors="replace")
    assert message.startswith("ner-client: ") and message.count("\n") == 1, message
    return message


def test_texts_as_arguments(served):
    result = ner_client("--url", f"grpc://{served.grpc_url}", GOOD, AWKWARD_TEXTS[1])
    out = records(result)
    assert [r["text"] for r in out] == [GOOD, AWKWARD_TEXTS[1]]
    for r in out:
        assert triples(r["entities"]) == expected_entities(r["text"])
        assert all(e["span"] == r["text"][e["start"]:e["end"]] for e in r["entities"])


def test_file_of_many_lines_over_http_from_the_environment(served, tmp_path):
    texts = [f"第{i}行" + "的" * (i % 7) + LINES[i % len(LINES)] for i in range(150)]
    texts[10] = ""
    path = tmp_path / "texts.txt"
    path.write_bytes(("\n".join(texts[:50]) + "\r\n" + "\n".join(texts[50:]) + "\n").encode("utf-8"))
    result = ner_client("--file", str(path), "--batch-size", "16", "--progress",
                        env={"NER_TRITON_URL": served.http_url, "NER_TRITON_PROTOCOL": "http",
                             "NER_CLIENT_PRECISION": "fp32"})
    out = records(result)
    assert [r["text"] for r in out] == texts
    want = served.reference(texts)
    for r, reference in zip(out, want):
        assert triples(r["entities"]) == triples(reference), r["text"]
    assert out[10]["entities"] == []
    assert b"150" in result.stderr  # the progress bar's count


def test_stdin_one_text_per_line(served):
    lines = [GOOD, "李四去了上海。", "", "王小明在Microsoft工作"]
    result = ner_client(stdin=("\n".join(lines) + "\n").encode("utf-8"), env={"NER_TRITON_URL": served.grpc_url})
    out = records(result)
    assert [r["text"] for r in out] == lines
    assert [triples(r["entities"]) for r in out] == [expected_entities(t) for t in lines]

    pretty = ner_client("--format", "pretty", "--color", "always", stdin=GOOD.encode("utf-8"),
                        env={"NER_TRITON_URL": served.grpc_url})
    assert pretty.returncode == 0
    shown = pretty.stdout.decode("utf-8")
    assert "\x1b[" in shown and "[PER]" in shown and "[ORG]" in shown
    plain = ner_client("--format", "pretty", stdin=GOOD.encode("utf-8"),
                       env={"NER_TRITON_URL": served.grpc_url, "NO_COLOR": "1"})
    assert plain.stdout.decode("utf-8") == "[张三|PER]在[北京|LOC]的[清华大学|ORG]读书。\n"


def test_model_info_and_the_entry_point(served):
    result = ner_client("--info", "--precision", "fp32",
                        env={"NER_TRITON_URL": served.grpc_url, "NER_CLIENT_MODEL": "ner"}, entry_point=True)
    (info,) = records(result)
    assert info["name"] == "ner_fp32" and info["precision"] == "fp32" and info["version"] == "1"
    assert info["model_hash"] == written_hash(served.repository, "ner_fp32")
    assert info["labels"] == list(served.checkpoint.labels) and info["max_texts_per_request"] >= 1


def test_server_down_exits_3(served):
    for protocol in ("grpc", "http"):
        result = ner_client("--url", f"127.0.0.1:{free_port()}", "--protocol", protocol, "--retries", "2", GOOD)
        assert result.returncode == 3 and result.stdout == b""
        assert "unavailable" in one_line_message(result)


def test_rejected_input_exits_4(served, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(GOOD.encode("utf-8") + b"\n" + b"ok\n" + b"\xff\xfe not utf-8\n")
    result = ner_client("--file", str(path), "--url", served.grpc_url)
    assert result.returncode == 4
    message = one_line_message(result)
    assert "line 3" in message and "not valid UTF-8" in message

    too_long = ("字" * 100_001 + "\n").encode("utf-8")
    result = ner_client("--url", f"http://{served.http_url}", stdin=too_long)
    assert result.returncode == 4 and "max_text_chars" in one_line_message(result)


@pytest.mark.parametrize("args, code", [(["--model", "no_such_model", GOOD], 5), (["--batch-size", "0", GOOD], 2),
                                        (["--file", "/no/such/file"], 2)])
def test_other_exit_codes(served, args, code):
    result = ner_client("--url", served.grpc_url, *args)
    assert result.returncode == code
    if "--batch-size" not in args:  # argparse's usage errors come with the usage
        one_line_message(result)
