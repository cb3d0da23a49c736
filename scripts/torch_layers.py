#!/usr/bin/env python3
"""Times convolution layers in PyTorch on the CPU, for `cargo bench --bench kernels`.

Reads a JSON object on standard input:
  {"batch": 256, "runs": 5, "threads": 2,
   "layers": [{"id": "...", "c": 1, "h": 28, "w": 28, "out": 32, "kh": 5, "kw": 5,
               "stride": 1, "padding": 2}, ...]}
and writes {"torch": version, "threads": n, "seconds": {id: {pass: s}}} on standard output:
the median seconds of each pass, as the bench times ours (same inputs' shapes, bias included):
  forward         y = conv(x, W) + b
  jvp             conv(Rx, W) + conv(x, V) + v_b        (forward mode: two products)
  backward_input  dx = conv_transpose(dy, W)
  weight_grad     dW = conv(x, dy) over the batch, db = Σ dy
"""

import json
import statistics
import sys
import time


def main():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(json.dumps({"error": f"PyTorch is not installed ({e}): pip install torch"}))
        return
    spec = json.load(sys.stdin)
    torch.set_num_threads(int(spec["threads"]))
    batch, runs = int(spec["batch"]), int(spec["runs"])
    generator = torch.Generator().manual_seed(0)
    seconds = {}
    with torch.no_grad():
        for layer in spec["layers"]:
            c, h, w, out = layer["c"], layer["h"], layer["w"], layer["out"]
            kh, kw, stride, pad = layer["kh"], layer["kw"], layer["stride"], layer["padding"]
            rand = lambda *shape: torch.rand(*shape, generator=generator) - 0.5
            x, rx = rand(batch, c, h, w), rand(batch, c, h, w)
            weight, bias = rand(out, c, kh, kw), rand(out)
            v_weight, v_bias = rand(out, c, kh, kw), rand(out)
            y = F.conv2d(x, weight, bias, stride=stride, padding=pad)
            dy = rand(*y.shape)
            passes = {
                "forward": lambda: F.conv2d(x, weight, bias, stride=stride, padding=pad),
                "jvp": lambda: F.conv2d(rx, weight, None, stride=stride, padding=pad)
                + F.conv2d(x, v_weight, v_bias, stride=stride, padding=pad),
                "backward_input": lambda: torch.nn.grad.conv2d_input(
                    x.shape, weight, dy, stride=stride, padding=pad
                ),
                "weight_grad": lambda: (
                    torch.nn.grad.conv2d_weight(x, weight.shape, dy, stride=stride, padding=pad),
                    dy.sum(dim=(0, 2, 3)),
                ),
            }
            times = {}
            for name, run in passes.items():
                run()  # the first call picks its algorithm and allocates
                samples = []
                for _ in range(runs):
                    start = time.perf_counter()
                    run()
                    samples.append(time.perf_counter() - start)
                times[name] = statistics.median(samples)
            seconds[layer["id"]] = times
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": seconds}))


if __name__ == "__main__":
    main()
