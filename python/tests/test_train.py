"""Training from numpy arrays: the program's records digit for digit, callbacks, stopping,
Ctrl-C, bad inputs, and models that round-trip."""

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import newton_wgpu as nw
from conftest import SMALL

# Seconds and the share of them spent summing: the only fields that differ between two runs.
TIMING = {"elapsed_s", "cg_s", "comm_s"}


def cli_records(program, tmp_path, args):
    log = tmp_path / "log.jsonl"
    env = dict(os.environ, NEWTON_WGPU_TUNE="off")
    subprocess.run([str(program), "train", "--net", str(SMALL), *args, "--log-json", str(log)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in log.read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.mark.parametrize(
    "optimizer, options, args",
    [
        ("newton", {"iters": 2, "gn_size": 15}, ["--iters", "2", "--gn-size", "15"]),
        ("sgd", {"epochs": 2, "batch": 64, "lr": 0.05}, ["--optim", "sgd", "--epochs", "2", "--batch", "64", "--lr", "0.05"]),
        ("sgn", {"epochs": 1, "batch": 100}, ["--optim", "sgn", "--epochs", "1", "--sgn-batch", "100"]),
    ],
)
def test_records_are_the_programs_digit_for_digit(digits, program, tmp_path, optimizer, options, args):
    X, y, X_test, y_test = digits
    result = nw.train(nw.Network.from_file(SMALL), X[:300], y[:300], optimizer=optimizer, loss="ce", c=0.01,
                      options=options, seed=3, test=(X_test, y_test))
    expected = cli_records(program, tmp_path, ["--loss", "ce", "--limit", "300", "--seed", "3", *args])
    assert without_timing(result.history) == without_timing(expected)
    assert result.stop_reason == ("iterations" if optimizer == "newton" else "epochs")
    assert result.model.score(X_test, y_test) == pytest.approx(expected[-1]["test_acc"], abs=1e-12)


def test_standardized_runs_are_the_programs_and_keep_the_deviation(digits, program, tmp_path):
    X, y, X_test, y_test = digits
    options = {"epochs": 1, "batch": 64, "lr": 0.05}
    result = nw.train(nw.Network.from_file(SMALL), X[:300], y[:300], optimizer="sgd", loss="ce", options=options,
                      seed=3, test=(X_test, y_test), standardize=True)
    args = ["--optim", "sgd", "--epochs", "1", "--batch", "64", "--lr", "0.05", "--standardize"]
    expected = cli_records(program, tmp_path, ["--loss", "ce", "--limit", "300", "--seed", "3", *args])
    assert without_timing(result.history) == without_timing(expected)
    state = result.model.state_dict()
    centred = X[:300].astype(np.float64) - X[:300].mean(axis=0)
    assert state["input_std"].shape == (1,)
    assert state["input_std"][0] == pytest.approx(np.sqrt(np.mean(centred ** 2)), rel=1e-5)
    assert result.model.score(X_test, y_test) == pytest.approx(expected[-1]["test_acc"], abs=1e-12)


def test_callbacks_see_every_record_and_can_stop(digits):
    X, y, _, _ = digits
    seen = []
    result = nw.train("cnn4-small", X[:200], y[:200], optimizer="sgd", options={"epochs": 5, "batch": 50},
                      callbacks=[seen.append, lambda record: record["epoch"] == 2])
    assert [r["epoch"] for r in seen] == [0, 1, 2]
    assert result.history == seen and result.stop_reason == "callback"


def test_an_exception_in_a_callback_reaches_the_caller(digits):
    X, y, _, _ = digits

    def fails(record):
        if record["iter"] == 1:
            raise RuntimeError("the callback failed at iteration 1")

    with pytest.raises(RuntimeError, match="the callback failed at iteration 1"):
        nw.train(nw.Network.from_file(SMALL), X[:200], y[:200], options={"iters": 5, "gn_size": 10}, callbacks=[fails])


def test_ctrl_c_ends_the_run_within_an_iteration(digits):
    X, y, _, _ = digits
    # Python's own Ctrl-C handler, even where the suite was started with SIGINT ignored (a
    # shell's background job): then Python installs none, and the signal would go unseen.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    seen, first = [], []
    # The signal comes half a second after the first record (θ0's), however long the start
    # takes on a slow machine.
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))

    def record(r):
        seen.append(r)
        if len(seen) == 1:
            first.append(time.monotonic())
            timer.start()

    try:
        with pytest.raises(KeyboardInterrupt):
            nw.train(nw.Network.from_file(SMALL), X[:300], y[:300], options={"iters": 1000, "gn_size": 15},
                     callbacks=[record])
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()
        signal.signal(signal.SIGINT, previous)
    assert 1 <= len(seen) < 1000
    # It ended at the first record after the signal: much sooner than the run.
    assert time.monotonic() - first[0] < 60


@pytest.mark.parametrize(
    "X, y, error, says",
    [
        (np.array([["a"]] * 4), [0] * 4, TypeError, "real numbers"),
        (np.zeros((4, 28)), [0] * 4, ValueError, "(N, C, H, W)"),
        (np.zeros((0, 1, 28, 28)), [], ValueError, "no samples"),
        (np.zeros((4, 1, 28, 28)), [0, 1, 2], ValueError, "4 samples but 3 labels"),
        (np.zeros((4, 1, 28, 28)), [0, 1, 2, 10], nw.DataError, "label 3 is 10"),
        (np.zeros((4, 1, 28, 28)), [0, 1, 2, -1], nw.DataError, "label 3 is -1"),
        (np.zeros((4, 1, 28, 28)), [0.5, 1, 2, 3], TypeError, "integer class labels"),
        (np.full((4, 1, 28, 28), np.nan), [0, 1, 2, 3], nw.DataError, "sample 0 holds NaN"),
    ],
)
def test_what_cannot_be_trained_on_is_refused_clearly(X, y, error, says):
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)")):
        nw.train(nw.Network.from_file(SMALL), X, y, options={"iters": 1})


def test_settings_are_checked_and_named():
    X, y = np.zeros((20, 1, 28, 28), np.float32), np.arange(20) % 10
    with pytest.raises(nw.SettingsError, match="has no setting `iterations`"):
        nw.train(nw.Network.from_file(SMALL), X, y, options={"iterations": 3})
    with pytest.raises(ValueError, match="optimizer"):
        nw.train(nw.Network.from_file(SMALL), X, y, optimizer="adam")
    with pytest.raises(nw.SettingsError, match="xi"):
        nw.train(nw.Network.from_file(SMALL), X, y, options={"xi": 1.5})
    assert nw.options_defaults("newton")["iters"] == 100 and nw.options_defaults("sgd")["batch"] == 128
    # Augmentation: a name, and no flips of arrays not known to be mirror-invariant.
    assert nw.options_defaults("sgn")["augment"] == "none"
    with pytest.raises(nw.SettingsError, match="rotate"):
        nw.train(nw.Network.from_file(SMALL), X, y, options={"iters": 1, "augment": "crop,rotate"})
    with pytest.raises(nw.SettingsError, match="flip changes"):
        nw.train(nw.Network.from_file(SMALL), X, y, options={"iters": 1, "augment": "flip"})
    for optimizer in ("newton", "sgn", "sgd"):
        steps = {"iters": 1} if optimizer == "newton" else {"epochs": 1, "batch": 10}
        result = nw.train(nw.Network.from_file(SMALL), X, y, optimizer=optimizer, options={**steps, "augment": "crop"})
        assert len(result.history) == 2


def test_models_round_trip_and_load_with_safetensors_alone(digits, tmp_path):
    X, y, X_test, y_test = digits
    model = nw.train(nw.Network.from_file(SMALL), X[:200], y[:200], optimizer="sgd", options={"epochs": 1}).model
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = nw.Model.load(path)
    np.testing.assert_array_equal(loaded.theta, model.theta)
    np.testing.assert_array_equal(loaded.predict_logits(X_test[:50]), model.predict_logits(X_test[:50]))
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    for name, values in model.state_dict().items():
        np.testing.assert_array_equal(tensors[name], values)
    with pytest.raises(OSError):
        nw.Model.load(tmp_path / "missing.safetensors")


def test_devices_say_what_they_are_and_refuse_what_is_not_there():
    info = nw.default_device().info()
    assert set(info) == {"name", "backend", "device_type", "driver", "software"} and info["name"]
    with pytest.raises(nw.SettingsError, match="backend"):
        nw.Device(backend="cuda")
    with pytest.raises(nw.GpuError):
        nw.Device(adapter="no adapter has this name")


def test_a_progress_bar_follows_the_records_and_closes(digits, capsys):
    pytest.importorskip("tqdm", reason="tqdm is not installed: the progress bar is not checked")
    X, y, _, _ = digits
    result = nw.train(nw.Network.from_file(SMALL), X[:200], y[:200], optimizer="sgd", options={"epochs": 2},
                      progress=True)
    assert result.stop_reason == "epochs"
    drawn = capsys.readouterr().err
    assert "2/2" in drawn and "epoch" in drawn, drawn
