//! Level-1 kernels: the device dot product equals an f64 sum, on awkward lengths.

mod common;

use common::{gpu, random_vec, rng};
use newton_wgpu::kernels::blas1;

#[test]
fn dot_matches_f64_sum_on_awkward_lengths() {
    let gpu = gpu();
    let scalars = gpu.zeros::<f32>(2, "scalars").unwrap();
    for (seed, len) in [1usize, 2, 63, 64, 65, 255, 256, 257, 1000, 70_001].into_iter().enumerate() {
        let mut rng = rng(seed as u64);
        let (x, y) = (random_vec(&mut rng, len), random_vec(&mut rng, len));
        let xb = gpu.upload(&x, "x").unwrap();
        let yb = gpu.upload(&y, "y").unwrap();
        let scratch = gpu.zeros::<f32>(blas1::dot_scratch_len(len), "scratch").unwrap();
        let mut rec = gpu.recorder();
        blas1::dot(&mut rec, &xb, &yb, len, &scratch, &scalars, 1).unwrap();
        rec.submit();
        let got = gpu.read(&scalars).unwrap()[1] as f64;
        let want: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = x.iter().zip(&y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        assert!((got - want).abs() <= 1e-5 * scale, "len {len}: {got} vs {want} (Σ|xy| = {scale})");
    }
}

#[test]
fn axpy_and_fill_touch_exactly_len_values() {
    let gpu = gpu();
    let x = gpu.upload(&[1.0f32, 2.0, 3.0, 4.0, 5.0], "x").unwrap();
    let y = gpu.upload(&[10.0f32; 5], "y").unwrap();
    let mut rec = gpu.recorder();
    blas1::axpy(&mut rec, 0.5, &x, &y, 4).unwrap();
    rec.submit();
    assert_eq!(gpu.read(&y).unwrap(), vec![10.5, 11.0, 11.5, 12.0, 10.0]);
    let mut rec = gpu.recorder();
    blas1::fill(&mut rec, &y, 3, -1.0).unwrap();
    rec.submit();
    assert_eq!(gpu.read(&y).unwrap(), vec![-1.0, -1.0, -1.0, 12.0, 10.0]);
    let mut rec = gpu.recorder();
    assert!(blas1::axpy(&mut rec, 1.0, &x, &y, 6).is_err(), "a length past the buffer is refused");
}
