// The entry points of the vec4 product kernels (gemm_direct.wgsl, gemm_tile4.wgsl) and the store
// they share, for any shader that supplies the operands: gemm_shape(), a4, b4 and
// store(m, col, value), one result of C (matmul.wgsl, conv_tiled.wgsl).

// C[m, col .. col+3] = v, for the values inside C.
fn store4(m: u32, col: u32, v: vec4<f32>) {
    let shape = gemm_shape();
    if (m >= shape.x) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (col + j < shape.y) { store(m, col + j, v[j]); }
    }
}

@compute @workgroup_size(WG)
fn direct(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    gemm_direct(flat_index(gid, nwg));
}

@compute @workgroup_size(WG)
fn tile4(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) l: u32) {
    gemm_tile4(wid, nwg, l);
}
