"""Trains cnn4-small on the bundled digits by Newton-CG (the program's main job, from Python)
and prints the test accuracy. Run from anywhere: python python/examples/train_mnist.py"""

import pathlib

import newton_wgpu as nw

data = pathlib.Path(__file__).resolve().parents[2] / "data" / "mnist-sample"
X, y, X_test, y_test = nw.load_dir(data)
print(f"{len(X)} training and {len(X_test)} test digits; adapter: {nw.default_device().info()['name']}")


def report(record):
    print(f"iteration {record['iter']:>2}: f = {record['f']:.6f}, test accuracy {100 * record['test_acc']:.2f}%")


result = nw.train(
    nw.Network.builtin("cnn4-small"),
    X,
    y,
    optimizer="newton",
    loss="ce",
    options={"iters": 10, "lambda": 0.1},
    test=(X_test, y_test),
    callbacks=[report],
)
print(f"test accuracy {100 * result.model.score(X_test, y_test):.2f}% ({result.stop_reason})")
result.model.save("mnist.safetensors")
