//! Level-1 kernels: the device dot product equals an f64 sum, on awkward lengths.

mod common;

use common::{gpu, random_vec, rng};
use newton_wgpu::kernels::blas1;

#[test]
fn dot_matches_f64_sum_on_awkward_lengths() {
    let gpu = gpu();
    let scalars_buf = gpu.zeros::<f32>(2, "scalars").unwrap();
    for (seed, len) in [1usize, 2, 63, 64, 65, 255, 256, 257, 1000, 70_001].into_iter().enumerate() {
        let mut rng = rng(seed as u64);
        let (x, y) = (random_vec(&mut rng, len), random_vec(&mut rng, len));
        let xb = gpu.upload(&x, "x").unwrap();
        let yb = gpu.upload(&y, "y").unwrap();
        let scratch = gpu.zeros::<f32>(blas1::dot_groups(len), "scratch").unwrap();
        let mut rec = gpu.recorder();
        blas1::dot(&mut rec, &xb, &yb, len, &scratch, &scalars_buf, 1).unwrap();
        blas1::norm(&mut rec, &xb, len, &scratch, &scalars_buf, 0).unwrap();
        rec.submit().unwrap();
        let scalars = gpu.read(&scalars_buf).unwrap();
        let (got, norm) = (scalars[1] as f64, scalars[0] as f64);
        let want: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = x.iter().zip(&y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        assert!((got - want).abs() <= 1e-5 * scale, "len {len}: {got} vs {want} (Σ|xy| = {scale})");
        // All terms of ‖x‖² are positive: it is its own sum of absolute terms (and √ halves
        // the relative error).
        let want_norm = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        assert!(
            (norm - want_norm).abs() <= 1e-5 * want_norm,
            "len {len}: ‖x‖ = {norm}, f64 gives {want_norm}"
        );
    }
}

#[test]
fn copy_and_scale_touch_exactly_the_range_asked_for() {
    let gpu = gpu();
    let x = gpu.upload(&[1.0f32, 2.0, 3.0, 4.0, 5.0], "x").unwrap();
    let y = gpu.upload(&[0.0f32; 6], "y").unwrap();
    let mut rec = gpu.recorder();
    blas1::copy(&mut rec, &x, 1, &y, 3, 3).unwrap();
    blas1::scale(&mut rec, -2.0, &y, 5).unwrap();
    rec.submit().unwrap();
    assert_eq!(gpu.read(&y).unwrap(), vec![0.0, 0.0, 0.0, -4.0, -6.0, 4.0]);
    let mut rec = gpu.recorder();
    assert!(blas1::copy(&mut rec, &x, 3, &y, 0, 3).is_err(), "a source range past the end is refused");
}

#[test]
fn axpy_and_fill_touch_exactly_len_values() {
    let gpu = gpu();
    let x = gpu.upload(&[1.0f32, 2.0, 3.0, 4.0, 5.0], "x").unwrap();
    let y = gpu.upload(&[10.0f32; 5], "y").unwrap();
    let mut rec = gpu.recorder();
    blas1::axpy(&mut rec, 0.5, &x, &y, 4).unwrap();
    rec.submit().unwrap();
    assert_eq!(gpu.read(&y).unwrap(), vec![10.5, 11.0, 11.5, 12.0, 10.0]);
    let mut rec = gpu.recorder();
    blas1::fill(&mut rec, &y, 3, -1.0).unwrap();
    rec.submit().unwrap();
    assert_eq!(gpu.read(&y).unwrap(), vec![-1.0, -1.0, -1.0, 12.0, 10.0]);
    let mut rec = gpu.recorder();
    assert!(blas1::axpy(&mut rec, 1.0, &x, &y, 6).is_err(), "a length past the buffer is refused");
}

/// The dot product's workgroup sums as a tree (every adapter) and by subgroups (where the
/// adapter has them, which the default device then uses) both equal the f64 sum, and each
/// other within rounding. Without subgroups the default device must have fallen back to the
/// tree: that is checked too, so the test never passes by looking at nothing.
#[test]
fn workgroup_sums_agree_in_every_reduction_the_adapter_has() {
    use newton_wgpu::gpu::Gpu;
    let (tree, default) = common::tree_and_default_gpus();
    for (seed, len) in [1usize, 63, 64, 65, 257, 4097, 70_001, 1 << 20].into_iter().enumerate() {
        let mut rng = rng(100 + seed as u64);
        let (x, y) = (random_vec(&mut rng, len), random_vec(&mut rng, len));
        let want: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = x.iter().zip(&y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        let dot_on = |gpu: &Gpu| -> f64 {
            let (xb, yb) = (gpu.upload(&x, "x").unwrap(), gpu.upload(&y, "y").unwrap());
            let scratch = gpu.zeros::<f32>(blas1::dot_groups(len), "scratch").unwrap();
            let scalars = gpu.zeros::<f32>(1, "scalars").unwrap();
            let mut rec = gpu.recorder();
            blas1::dot(&mut rec, &xb, &yb, len, &scratch, &scalars, 0).unwrap();
            rec.submit().unwrap();
            gpu.read(&scalars).unwrap()[0] as f64
        };
        let (by_tree, by_default) = (dot_on(&tree), dot_on(&default));
        for (how, got) in [("tree", by_tree), ("default", by_default)] {
            assert!(
                (got - want).abs() <= 1e-5 * scale,
                "len {len}, {how}: {got} vs {want} (Σ|xy| = {scale})"
            );
        }
        assert!(
            (by_tree - by_default).abs() <= 1e-5 * scale,
            "len {len}: tree {by_tree}, default {by_default}"
        );
    }
}
