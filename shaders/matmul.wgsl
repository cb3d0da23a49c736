// The dense matrix product C[M, N] = A[M, K] · B[K, N], row-major from offset 0, by the tiles
// of gemm_tile.wgsl. The benchmarks rate the tiles with it.

struct Params { m: u32, n: u32, k: u32, _pad0: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> mat_c: array<f32>;

fn gemm_shape() -> vec3<u32> { return vec3<u32>(P.m, P.n, P.k); }

fn a_at(m: u32, k: u32) -> f32 {
    if (m >= P.m || k >= P.k) { return 0.0; }
    return mat_a[m * P.k + k];
}

fn b_at(k: u32, col: u32) -> f32 {
    if (k >= P.k || col >= P.n) { return 0.0; }
    return mat_b[k * P.n + col];
}

fn store(m: u32, col: u32, value: f32) { mat_c[m * P.n + col] = value; }

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) l: u32) {
    gemm_tile(wid, nwg, l);
}
