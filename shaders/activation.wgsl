// ReLU and its backward pass. Layouts: flat arrays of `len` values, any shape.
//   forward:  y = max(x, 0)
//   backward: dx = dy * [y > 0]   (y > 0 exactly where x > 0, so the stored output is the mask)

struct Params { len: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

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
