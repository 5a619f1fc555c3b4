"""The settings layer: one boolean parser, the command line over the environment over the default, --help from the
declarations, option tables in the docs that cannot go stale, and no environment read outside the layer."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ner_client import settings as S

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parent.parent
# Variables that are terminal conventions, not the project's settings: they keep their standard names.
TERMINAL_CONVENTIONS = ("NO_COLOR", "TERM")
PRODUCT_PACKAGES = ("client", "evaluation", "export", "model_repository", "ner_model", "ner_pipeline", "perf",
                    "serving", "training", "webui")

GROUP = S.SettingGroup("NER_DEMO_", (
    S.Setting("checkpoint", None, "what to read", type=Path, env="NER_CHECKPOINT", positional=True, required=True),
    S.Setting("threads", 2, "worker threads", type=S.positive_int),
    S.Setting("progress", True, "show progress", type=S.boolean),
    S.Setting("mode", "fast", "how", choices=("fast", "exact")),
    S.Setting("models", ("ner", "ner_fp32"), "ensembles", type=S.comma_list),
))


@pytest.mark.parametrize("text, value", [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                         ("0", False), ("False", False), ("no", False), ("OFF", False)])
def test_one_boolean_parser(text, value):
    assert S.boolean(text) is value


@pytest.mark.parametrize("text", ["", "2", "enabled", "y"])
def test_boolean_refuses_what_it_does_not_know(text):
    with pytest.raises(ValueError, match="not a boolean"):
        S.boolean(text)


def parse(argv, environ=None):
    return GROUP.parse(argv, prog="demo", environ=environ or {})


def test_default_then_environment_then_command_line():
    assert vars(parse(["ck"])) == {"checkpoint": Path("ck"), "threads": 2, "progress": True, "mode": "fast",
                                   "models": ("ner", "ner_fp32")}
    environ = {"NER_CHECKPOINT": "from-env", "NER_DEMO_THREADS": "3", "NER_DEMO_PROGRESS": "off",
               "NER_DEMO_MODE": "exact", "NER_DEMO_MODELS": "ner_fp32"}
    args = parse([], environ)
    assert (args.checkpoint, args.threads, args.progress, args.mode, args.models) == (
        Path("from-env"), 3, False, "exact", ("ner_fp32",))
    args = parse(["ck", "--threads", "4", "--progress", "--mode", "fast"], environ)
    assert (args.checkpoint, args.threads, args.progress, args.mode) == (Path("ck"), 4, True, "fast")
    assert parse(["ck", "--no-progress"]).progress is False


@pytest.mark.parametrize("argv, environ, message", [
    ([], {}, "CHECKPOINT is required (or NER_CHECKPOINT)"),
    (["ck"], {"NER_DEMO_THREADS": "0"}, "NER_DEMO_THREADS='0': must be at least 1"),
    (["ck"], {"NER_DEMO_PROGRESS": "maybe"}, "NER_DEMO_PROGRESS='maybe': not a boolean"),
    (["ck"], {"NER_DEMO_MODE": "slow"}, "must be one of fast, exact"),
    (["ck", "--threads", "x"], {}, "argument --threads: expected an integer, not 'x'"),
    (["ck", "--threads", "0"], {}, "argument --threads: must be at least 1, not 0"),
    (["ck", "--mode", "slow"], {}, "argument --mode: must be one of fast, exact, not 'slow'"),
])
def test_bad_values_name_their_flag_or_variable(argv, environ, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse(argv, environ)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_help_shows_every_flag_with_its_variable_and_default():
    help_text = GROUP.parser("demo").format_help()
    for setting in GROUP:
        shown = setting.name.upper() if setting.positional else setting.flag
        assert shown.lower() in help_text.lower()
        assert f"[{GROUP.env_name(setting)}; default: {setting.default_text()}]" in " ".join(help_text.split())
    assert "--no-progress" in help_text


def test_defaults_are_the_declared_values_and_refuse_unknown_names():
    assert GROUP.defaults(threads=5) == argparse.Namespace(checkpoint=None, threads=5, progress=True, mode="fast",
                                                           models=("ner", "ner_fp32"))
    with pytest.raises(TypeError, match="unknown settings: thread"):
        GROUP.defaults(thread=5)


def test_a_name_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        S.SettingGroup("NER_X_", (S.Setting("a", 1, "x"), S.Setting("a", 2, "y")))


def test_option_tables_are_rewritten_from_their_group(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- options: test_settings:GROUP -->\nold table\n<!-- /options -->\nend\n")
    assert S.main([str(page), "--check"]) == 1
    assert S.main([str(page)]) == 0
    text = page.read_text()
    assert text == "intro\n<!-- options: test_settings:GROUP -->\n" + GROUP.markdown() + "<!-- /options -->\nend\n"
    assert "| `--threads` | `NER_DEMO_THREADS` | integer ≥ 1 | `2` | worker threads |" in text
    assert "| `--progress, --no-progress` | `NER_DEMO_PROGRESS` | boolean | `true` | show progress |" in text
    assert S.main([str(page), "--check"]) == 0


def documented_pages() -> list[Path]:
    pages = [p for p in REPO_ROOT.rglob("*.md") if ".venv" not in p.parts and "build" not in p.parts]
    return [p for p in pages if "<!-- options: " in p.read_text(encoding="utf-8")]


def test_the_docs_option_tables_are_fresh():
    pages = documented_pages()
    assert REPO_ROOT / "docs" / "configuration.md" in pages
    done = subprocess.run([sys.executable, "-m", "ner_client.settings", "--check", *map(str, pages)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"stale option tables (python -m ner_client.settings FILE... rewrites them):\n" \
                                 f"{done.stdout}{done.stderr}"


def environment_reads(path: Path) -> list[str]:
    """Lines of ``path`` that read a variable: ``os.environ[...]``, ``.get``, ``in os.environ``, ``os.getenv``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr == "getenv":
            found.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            found.append(node.lineno)
    reads = []
    source = path.read_text(encoding="utf-8").splitlines()
    for line in sorted(set(found)):
        text = source[line - 1]
        # Handing the whole environment on to a child process reads no setting.
        if "dict(os.environ" in text or "**os.environ" in text:
            continue
        if any(f'"{name}"' in text for name in TERMINAL_CONVENTIONS):
            continue
        reads.append(f"{path.relative_to(REPO_ROOT)}:{line}: {text.strip()}")
    return reads


def test_environment_variables_are_read_only_by_the_settings_layer():
    layer = REPO_ROOT / "client" / "ner_client" / "settings.py"
    reads = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if path != layer and ".tools" not in path.parts:
                reads += environment_reads(path)
    assert not reads, "read the environment through ner_client.settings:\n" + "\n".join(reads)
