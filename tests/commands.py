"""The project's scoring commands run as a user runs them: a subprocess from the repository's root, against a served
model and its repository in process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ner_model.data import REPO_ROOT


def run_scoring_command(module: str, served, data_file: Path, output: Path, *extra: str, timeout: int = 600):
    """(the finished process, its JSON report) of ``python -m module --file data_file`` with the served model's gRPC
    URL and repository; fails the test when the command fails."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--file", str(data_file), "--url", served.grpc_url,
         "--in-process", str(served.repository), "--output", str(output), *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result, json.loads(Path(output).read_text())
