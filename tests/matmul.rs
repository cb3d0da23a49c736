//! The project's tiled matrix product (the kernel that the tiled convolutions are built on and
//! that the benchmarks rate) against a CPU product in f64.

mod common;

use common::{assert_close, gpu, random_vec, rng};
use newton_wgpu::kernels::matmul::matmul;
use newton_wgpu::kernels::GemmKernel;

fn check(kernel: GemmKernel, m: usize, n: usize, k: usize, seed: u64) {
    let gpu = gpu();
    let mut rng = rng(seed);
    let (a, b) = (random_vec(&mut rng, m * k), random_vec(&mut rng, k * n));
    let (mut want, mut scale) = (vec![0.0f64; m * n], vec![0.0f64; m * n]);
    for i in 0..m {
        for j in 0..n {
            for l in 0..k {
                let term = a[i * k + l] as f64 * b[l * n + j] as f64;
                want[i * n + j] += term;
                scale[i * n + j] += term.abs();
            }
        }
    }
    let (a_buf, b_buf) = (gpu.upload(&a, "A").unwrap(), gpu.upload(&b, "B").unwrap());
    // C starts as garbage: the product overwrites it rather than adding to it.
    let c_buf = gpu.upload(&vec![7.0f32; m * n], "C").unwrap();
    let mut rec = gpu.recorder();
    matmul(&mut rec, kernel, (m, n, k), &a_buf, &b_buf, &c_buf).unwrap();
    rec.submit().unwrap();
    let got = gpu.read(&c_buf).unwrap();
    assert_close(&format!("{kernel}: {m}×{k} · {k}×{n}"), &got, &want, &scale, 1e-5);
}

#[test]
fn every_product_kernel_matches_the_cpu_on_shapes_around_its_tiles() {
    // gemm_tile: (8 × ROWS) × 64 with K in steps of 16, ROWS = 1, 2, 4 or 8 by m; gemm_direct:
    // rows × 4 with K in steps of 4; gemm_tile4: 32 × 32 with K in steps of 32. One value,
    // partial tiles and blocks on every side, whole ones, several each way, K shorter and
    // longer than a step, and K and N multiples of 4 (rows read as vec4) or not.
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (64, 64, 16),
        (65, 63, 17),
        (130, 70, 33),
        (10, 200, 100),
        (27, 70, 20),
        (33, 36, 64),
        (9, 12, 8),
    ];
    for kernel in GemmKernel::ALL {
        for (i, (m, n, k)) in shapes.into_iter().enumerate() {
            check(kernel, m, n, k, 40 + i as u64);
        }
    }
}

#[test]
fn matmul_refuses_buffers_shorter_than_the_shape() {
    let gpu = gpu();
    let a = gpu.zeros::<f32>(6, "A").unwrap();
    let b = gpu.zeros::<f32>(6, "B").unwrap();
    let c = gpu.zeros::<f32>(8, "C").unwrap();
    let mut rec = gpu.recorder();
    let message = matmul(&mut rec, GemmKernel::Tile4, (3, 3, 2), &a, &b, &c).unwrap_err().to_string();
    assert!(message.contains("\"C\"") && message.contains("needs at least 9"), "{message}");
}
