// The dense matrix product C[M, N] = A[M, K] · B[K, N], row-major from offset 0, by any of the
// product kernels: the tiles of gemm_tile.wgsl (matmul), the register blocks of
// gemm_direct.wgsl (direct) and the vec4 tiles of gemm_tile4.wgsl (tile4; both entry points
// in gemm_vec4.wgsl). The tuner times them against each other; the benchmarks rate them.
//
// A and B are bound twice, as f32 and as vec4 values (read-only, so the two views may alias):
// with VEC_A (K a multiple of 4) a row of A is read four values per load, with VEC_B (N a
// multiple of 4) a row of B likewise; otherwise value by value.

struct Params { m: u32, n: u32, k: u32, _pad0: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> mat_c: array<f32>;
@group(0) @binding(4) var<storage, read> mat_a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> mat_b4: array<vec4<f32>>;

// Whether rows of A (of B) start at multiples of 4 values, so that they load as vec4.
override VEC_A: bool = false;
override VEC_B: bool = false;

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

// With VEC_A, k is a multiple of 4 and so is K: the four values are inside A or outside.
fn a4(m: u32, k: u32) -> vec4<f32> {
    if (VEC_A) {
        if (m >= P.m || k >= P.k) { return vec4<f32>(); }
        return mat_a4[(m * P.k + k) / 4u];
    }
    return vec4<f32>(a_at(m, k), a_at(m, k + 1u), a_at(m, k + 2u), a_at(m, k + 3u));
}

fn b4(k: u32, col: u32) -> vec4<f32> {
    if (VEC_B) {
        if (k >= P.k || col >= P.n) { return vec4<f32>(); }
        return mat_b4[(k * P.n + col) / 4u];
    }
    return vec4<f32>(b_at(k, col), b_at(k, col + 1u), b_at(k, col + 2u), b_at(k, col + 3u));
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) l: u32) {
    gemm_tile(wid, nwg, l);
}
