import os
import pathlib

import numpy as np
import pytest

import newton_wgpu as nw

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = ROOT / "examples" / "networks" / "small.toml"


@pytest.fixture(scope="session")
def digits():
    """The bundled digits as arrays: (X, y, X_test, y_test)."""
    return nw.load_dir(ROOT / "data" / "mnist-sample")


@pytest.fixture(scope="session")
def program():
    """The newton-wgpu program to compare with: NEWTON_WGPU_BIN, else the release or debug
    build of this checkout. Missing, the test fails: it never skips."""
    named = os.environ.get("NEWTON_WGPU_BIN")
    candidates = [pathlib.Path(named)] if named else [ROOT / "target" / p / "newton-wgpu" for p in ("release", "debug")]
    for path in candidates:
        if path.is_file():
            return path
    pytest.fail(f"no newton-wgpu program at {[str(c) for c in candidates]}: build it (cargo build) or set NEWTON_WGPU_BIN")
