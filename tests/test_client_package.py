"""The client distribution (client/) on its own: it imports nothing of the server's, installs into a clean venv
without torch or the server's packages, and its command line takes its options from its flags, then its variables."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ner_client.cli import parse_args

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT = REPO_ROOT / "client"
GOOD = "张三在北京的清华大学读书。"
# What the client's declared dependencies bring besides themselves: tritonclient[http,grpc] imports these.
TRITONCLIENT_IMPORTS = {"aiohttp", "gevent", "grpc"}


def distribution_imports() -> dict[str, set[str]]:
    """Top-level modules imported by each file of the ner_client package (relative imports left out)."""
    found = {}
    for path in sorted((CLIENT / "ner_client").rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO_ROOT))] = names
    return found


@pytest.mark.unit
def test_the_client_imports_only_the_stdlib_and_its_dependencies():
    declared = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]["dependencies"]
    allowed = {"ner_client", *TRITONCLIENT_IMPORTS, *(re.match(r"[\w.-]+", requirement)[0] for requirement in declared)}
    foreign = {path: sorted(names - allowed - set(sys.stdlib_module_names))
               for path, names in distribution_imports().items()}
    foreign = {path: names for path, names in foreign.items() if names}
    assert not foreign, f"the client distribution imports what it does not declare: {foreign}"


@pytest.mark.slow
def test_the_client_installs_and_runs_in_a_clean_venv(tmp_path):
    """pip install ./client into a new venv (from PyPI): the SDK imports and the command answers --help, with
    neither torch nor any server package in the venv."""
    source = tmp_path / "client"  # a copy: pip builds in the source tree
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, command = venv / "bin" / "python", venv / "bin" / "ner-client"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    help_text = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=True,
                               cwd=tmp_path).stdout
    assert "NER_TRITON_URL" in help_text and "NER_CLIENT_BATCH_SIZE" in help_text
    check = ("import importlib.util, ner_client, ner_client.settings\n"
             "present = [m for m in ('torch', 'onnxruntime', 'starlette', 'export', 'serving', 'ner_model', 'webui') "
             "if importlib.util.find_spec(m)]\n"
             "assert not present, present\n"
             "print(ner_client.NerClient.__name__)\n")
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "NerClient\n", done.stderr


@pytest.mark.unit
def test_cli_options_come_from_the_command_line_then_the_environment():
    environ = {"NER_TRITON_URL": "http://10.0.0.1:8000", "NER_CLIENT_BATCH_SIZE": "16", "NER_CLIENT_PROGRESS": "off",
               "NER_CLIENT_MODEL": "ner", "NER_CLIENT_FILE": "texts.txt"}
    args = parse_args([], environ)
    assert (args.url, args.batch_size, args.progress, args.model, args.file, args.concurrency) == (
        "http://10.0.0.1:8000", 16, False, "ner", "texts.txt", 4)
    args = parse_args(["--precision", "fp32", "--batch-size", "8", "--progress", GOOD], environ)
    # --model / --precision on the command line win over both variables; texts as arguments over NER_CLIENT_FILE.
    assert (args.model, args.precision, args.batch_size, args.progress, args.file, args.texts) == (
        None, "fp32", 8, True, None, [GOOD])
    assert parse_args([], {"NER_CLIENT_PRECISION": "fp32"}).precision == "fp32"


@pytest.mark.unit
@pytest.mark.parametrize("argv, environ, message", [
    (["--model", "ner", "--precision", "fp32"], {}, "not allowed with argument"),
    (["--file", "texts.txt", GOOD], {}, "give texts as arguments or --file, not both"),
    ([GOOD], {"NER_CLIENT_CONCURRENCY": "0"}, "NER_CLIENT_CONCURRENCY='0': must be at least 1"),
    ([GOOD], {"NER_CLIENT_PROGRESS": "maybe"}, "NER_CLIENT_PROGRESS='maybe': not a boolean"),
    (["--timeout", "0", GOOD], {}, "argument --timeout"),
])
def test_cli_usage_errors(argv, environ, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv, environ)
    assert stop.value.code == 2 and message in capsys.readouterr().err
