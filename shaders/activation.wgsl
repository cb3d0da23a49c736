// The activations and their backward passes. Layouts: flat arrays of `len` values, any shape.
// Each derivative is a function of the stored output y, so backward (dx = dy * f'(x)) and
// forward mode (R(y) = R(x) * f'(x)) read y alone:
//   relu:    y = max(x, 0),        f' = [y > 0]   (y > 0 exactly where x > 0)
//   smooth:  P.function 0, tanh:   y = tanh(x),         f' = 1 - y*y
//            P.function 1, sigmoid: y = 1 / (1 + e^-x), f' = y * (1 - y)

struct Params { len: u32, function: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= P.len) { return; }
    fwd_y[t] = max(fwd_x[t], 0.0);
}

@group(0) @binding(1) var<storage, read> bwd_y: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_dx: array<f32>;

@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= P.len) { return; }
    bwd_dx[t] = select(0.0, bwd_dy[t], bwd_y[t] > 0.0);
}

// The logistic function without overflow: e^-|x| never exceeds 1.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

@compute @workgroup_size(WG)
fn smooth_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= P.len) { return; }
    let x = fwd_x[t];
    fwd_y[t] = select(sigmoid(x), tanh(x), P.function == 0u);
}

@compute @workgroup_size(WG)
fn smooth_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= P.len) { return; }
    let y = bwd_y[t];
    let slope = select(y * (1.0 - y), 1.0 - y * y, P.function == 0u);
    bwd_dx[t] = bwd_dy[t] * slope;
}
