// Average pooling over kernel_h x kernel_w windows with a stride and zero padding, counting
// the padding (PyTorch's default, count_include_pad): every window divides by its area. The
// pass is linear and has no parameters, so forward mode is the forward pass on the direction.
// Layouts: x [planes, in_h, in_w]; y [planes, out_h, out_w], out = (in + 2 pad - k) / s + 1.
// Global average pooling is the window of the whole plane.

struct Params {
    planes: u32, in_h: u32, in_w: u32, out_h: u32,
    out_w: u32, kernel_h: u32, kernel_w: u32, stride: u32,
    padding: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

// One invocation per output: the mean of its window.
@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let per_plane = P.out_h * P.out_w;
    if (t >= P.planes * per_plane) { return; }
    let plane = t / per_plane;
    let p = (t % per_plane) / P.out_w;
    let q = t % P.out_w;
    let base = plane * P.in_h * P.in_w;
    var sum = 0.0;
    for (var i = 0u; i < P.kernel_h; i++) {
        let h = i32(p * P.stride + i) - i32(P.padding);
        if (h < 0 || h >= i32(P.in_h)) { continue; }
        for (var j = 0u; j < P.kernel_w; j++) {
            let w = i32(q * P.stride + j) - i32(P.padding);
            if (w < 0 || w >= i32(P.in_w)) { continue; }
            sum += fwd_x[base + u32(h) * P.in_w + u32(w)];
        }
    }
    fwd_y[t] = sum / f32(P.kernel_h * P.kernel_w);
}

@group(0) @binding(1) var<storage, read> bwd_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> bwd_dx: array<f32>;

// The first window index whose window, of `kernel` from index·stride − padding, reaches
// `at`: ⌈(at + padding − kernel + 1) / stride⌉, at least 0.
fn first_window(at: u32, kernel: u32) -> u32 {
    let reach = i32(at + P.padding) - i32(kernel) + 1;
    if (reach <= 0) { return 0u; }
    return (u32(reach) + P.stride - 1u) / P.stride;
}

// One invocation per input: the sum of dy over the windows that cover it, over their area.
// Gathering needs no atomics, and overlapping windows add up in a fixed order.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let per_plane = P.in_h * P.in_w;
    if (t >= P.planes * per_plane) { return; }
    let plane = t / per_plane;
    let h = (t % per_plane) / P.in_w;
    let w = t % P.in_w;
    let last_p = min((h + P.padding) / P.stride, P.out_h - 1u);
    let last_q = min((w + P.padding) / P.stride, P.out_w - 1u);
    let base = plane * P.out_h * P.out_w;
    var sum = 0.0;
    for (var p = first_window(h, P.kernel_h); p <= last_p; p++) {
        for (var q = first_window(w, P.kernel_w); q <= last_q; q++) {
            sum += bwd_dy[base + p * P.out_w + q];
        }
    }
    bwd_dx[t] = sum / f32(P.kernel_h * P.kernel_w);
}
