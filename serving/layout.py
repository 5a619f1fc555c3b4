"""Lays out the Triton server bundled in the nvidia-pytriton wheel so that it runs from a folder of ours.

The wheel holds a real tritonserver (2.51.0) with the Python backend, the local response cache and one
Python-backend stub per Python version; the stub for this interpreter must sit in backends/python/, and the
server's shared libraries (renamed by auditwheel) must be on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerLayout:
    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.root / "backends"

    @property
    def caches(self) -> Path:
        return self.root / "caches"

    def environment(self) -> dict[str, str]:
        """The variables the server and its Python-backend stubs need."""
        import pytriton

        libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
        python_libdir = sysconfig.get_config_var("LIBDIR") or ""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libs), python_libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        # The stub imports the models' packages (numpy, onnxruntime, tokenizers) from the first python on PATH.
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        return env


def _bundled_tree() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def ensure_layout(root: Path) -> ServerLayout:
    """Copies the bundled server to ``root`` once (and again if the wheel changed); returns the layout."""
    source = _bundled_tree()
    layout = ServerLayout(root)
    stamp = root / ".source"
    wanted = f"{source}:{source.joinpath('bin', 'tritonserver').stat().st_mtime_ns}:{sys.version_info[:2]}"
    if stamp.exists() and stamp.read_text() == wanted and layout.binary.exists():
        return layout
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("python_backend_stubs"))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    shutil.copy2(stub, layout.backends / "python" / "triton_python_backend_stub")
    stamp.write_text(wanted)
    return layout
