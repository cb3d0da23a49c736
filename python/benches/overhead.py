"""The Python package's cost over the program's for the same training: each pair runs
`newton-wgpu train` and `newton_wgpu.train` with the same settings on the bundled digits,
alternately, and reports the wall time of each (process start to end, data reading and the
device included) and the training seconds the runs log, as medians.

    python python/benches/overhead.py [PAIRS]   (NEWTON_WGPU_BIN: the program; default
                                                 target/release/newton-wgpu)
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAM = os.environ.get("NEWTON_WGPU_BIN", str(ROOT / "target" / "release" / "newton-wgpu"))
CASES = {
    "Newton-CG, 5 iterations": (["--iters", "5", "--lambda", "0.1"], "newton", {"iters": 5, "lambda": 0.1}),
    "SGD, 2 epochs": (["--optim", "sgd", "--epochs", "2"], "sgd", {"epochs": 2}),
}
PYTHON_RUN = """
import json, sys, newton_wgpu as nw
optimizer, options = sys.argv[1], json.loads(sys.argv[2])
X, y, X_test, y_test = nw.load_dir(sys.argv[3])
r = nw.train(nw.Network.builtin("cnn4-small"), X[:2000], y[:2000], optimizer=optimizer, loss="ce",
             options=options, test=(X_test, y_test))
print(r.history[-1]["elapsed_s"])
"""


def timed(command, env):
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, done.stdout


def main(pairs):
    env = dict(os.environ, NEWTON_WGPU_TUNE="off")
    data = str(ROOT / "data" / "mnist-sample")
    for name, (args, optimizer, options) in CASES.items():
        cli, py = [], []
        for _ in range(pairs):
            with tempfile.TemporaryDirectory() as tmp:
                log = os.path.join(tmp, "log.jsonl")
                command = [PROGRAM, "train", "--net", "cnn4-small", "--loss", "ce", "--limit", "2000", *args,
                           "--log-json", log]
                wall, _ = timed(command, env)
                with open(log) as f:
                    cli.append((wall, json.loads(f.read().splitlines()[-1])["elapsed_s"]))
            wall, out = timed([sys.executable, "-c", PYTHON_RUN, optimizer, json.dumps(options), data], env)
            py.append((wall, float(out.split()[-1])))
        med = lambda runs, i: statistics.median(r[i] for r in runs)
        print(f"{name}: program {med(cli, 0):.2f} s wall, {med(cli, 1):.2f} s training; "
              f"Python {med(py, 0):.2f} s wall, {med(py, 1):.2f} s training; "
              f"Python/program wall {med(py, 0) / med(cli, 0):.3f}, training {med(py, 1) / med(cli, 1):.3f} "
              f"(medians of {pairs} pairs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
