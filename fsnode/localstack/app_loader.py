"""Load the Chalice app in ``functions/`` by path.

By path and under its own module name, because the repository root has an
``app.py`` too (the CDK app) and ``functions/`` is not an installed package.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

_MODULE = "fsnode_functions_app"
_lock = threading.Lock()


def load_functions_app(functions_dir: Path) -> ModuleType:
    """The imported ``functions/app.py`` module (imported once per process)."""
    with _lock:
        module = sys.modules.get(_MODULE)
        if module is not None:
            return module
        # chalicelib is imported by the app as a top-level package, as in Lambda.
        sys.path.insert(0, str(functions_dir))
        spec = importlib.util.spec_from_file_location(_MODULE, functions_dir / "app.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {functions_dir / 'app.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module
        spec.loader.exec_module(module)
        return module
