// Level-1 operations on device vectors.
//   fill:              y[i] = alpha                                   for i < len
//   copy:              y[offset + i] = x[source + i]                  for i < len
//   scale:             y[i] *= alpha                                  for i < len
//   axpy:              y[i] += alpha * x[i]                          for i < len
//   add:               z[i] = x[i] + y[i]                            for i < len
//   dot_partial:       partial[b] = sum over workgroup b's values of x[i] * y[i]: a grid of
//                      nwg.x workgroups, invocation t of b taking i = b * WG + t, then every
//                      (nwg.x * WG)-th i, summed over the workgroup by workgroup_sum
//   sum_partial:       partial[b] = sum over workgroup b's values of x[i], as dot_partial
//   dot_final:         scalars[slot] = sum_b partial[b], in order b = 0, 1, ...
//   norm_final:        scalars[slot] = sqrt(sum_b partial[b]), likewise
//   accumulate_groups: y[off + k] += sum_g partial[g * len + k], in order g = 0, 1, ...
// Reductions run in a fixed order without atomics, so results repeat bit for bit.
// The dot products' grids have at most MAX_DOT_GROUPS (256) workgroups, a single dimension.

struct Params { len: u32, block: u32, offset: u32, alpha: f32, source: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read_write> fill_y: array<f32>;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    fill_y[i] = P.alpha;
}

@group(0) @binding(1) var<storage, read> copy_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> copy_y: array<f32>;

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    copy_y[P.offset + i] = copy_x[P.source + i];
}

@group(0) @binding(1) var<storage, read_write> scale_y: array<f32>;

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    scale_y[i] *= P.alpha;
}

@group(0) @binding(1) var<storage, read> axpy_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> axpy_y: array<f32>;

@compute @workgroup_size(WG)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    axpy_y[i] += P.alpha * axpy_x[i];
}

@group(0) @binding(1) var<storage, read> add_x: array<f32>;
@group(0) @binding(2) var<storage, read> add_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> add_z: array<f32>;

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= P.len) { return; }
    add_z[i] = add_x[i] + add_y[i];
}

@group(0) @binding(1) var<storage, read> dot_x: array<f32>;
@group(0) @binding(2) var<storage, read> dot_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dot_out: array<f32>;

@compute @workgroup_size(WG)
fn dot_partial(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               lanes: Lanes) {
    let stride = nwg.x * WG;
    var acc = 0.0;
    for (var i = wid.x * WG + lanes.index; i < P.len; i += stride) { acc += dot_x[i] * dot_y[i]; }
    let total = workgroup_sum(acc, lanes);
    if (lanes.index == 0u) { dot_out[wid.x] = total; }
}

@group(0) @binding(1) var<storage, read> sum_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum_out: array<f32>;

@compute @workgroup_size(WG)
fn sum_partial(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               lanes: Lanes) {
    let stride = nwg.x * WG;
    var acc = 0.0;
    for (var i = wid.x * WG + lanes.index; i < P.len; i += stride) { acc += sum_x[i]; }
    let total = workgroup_sum(acc, lanes);
    if (lanes.index == 0u) { sum_out[wid.x] = total; }
}

@group(0) @binding(1) var<storage, read> final_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> final_scalars: array<f32>;

// P.len partials go to scalars[P.offset]; one invocation.
@compute @workgroup_size(WG)
fn dot_final(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) != 0u) { return; }
    final_scalars[P.offset] = sum_partials();
}

fn sum_partials() -> f32 {
    var acc = 0.0;
    for (var b = 0u; b < P.len; b++) { acc += final_partial[b]; }
    return acc;
}

@compute @workgroup_size(WG)
fn norm_final(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    if (flat_index(gid, nwg) != 0u) { return; }
    final_scalars[P.offset] = sqrt(sum_partials());
}

@group(0) @binding(1) var<storage, read> acc_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc_y: array<f32>;

// P.block is the number of groups here.
@compute @workgroup_size(WG)
fn accumulate_groups(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat_index(gid, nwg);
    if (k >= P.len) { return; }
    var acc = 0.0;
    for (var g = 0u; g < P.block; g++) { acc += acc_partial[g * P.len + k]; }
    acc_y[P.offset + k] += acc;
}
