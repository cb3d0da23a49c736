//! Preconditioned CG on a system whose matrix is known in closed form: a single dense layer
//! with squared loss, whose Gauss-Newton matrix is (2/|S|) Σ x̃ x̃ᵀ for each output, on
//! inputs whose features differ in scale by a factor of 1,000 (so that plain CG is slow and a
//! diagonal preconditioner helps).

mod common;

use common::{gpu, random_vec, rng};
use newton_wgpu::curvature::{Subsample, SubsampleOptions};
use newton_wgpu::data::Dataset;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{LayerSpec, Network, Shape};
use newton_wgpu::optim::cg::{self, CgBuffers, CgOutcome, CgSettings, PreconditionerOptions, Stop};
use newton_wgpu::{Execution, Problem};
use rand::Rng;

const C: f64 = 0.01;
const LAMBDA: f64 = 1e-3;
/// Features, outputs and samples (all of them in S).
const D: usize = 24;
const K: usize = 2;
const L: usize = 60;

/// Zero-mean features, feature j scaled by 10^(3j/(D−1) − 1.5): from 0.03 to 30.
fn badly_scaled() -> Dataset {
    let mut rng = rng(21);
    let images: Vec<f32> = (0..L * D)
        .map(|i| {
            let j = i % D;
            let scale = 10f64.powf(3.0 * j as f64 / (D - 1) as f64 - 1.5);
            (rng.random_range(-1.0..1.0) * scale) as f32
        })
        .collect();
    let labels = (0..L).map(|i| (i % K) as u32).collect();
    Dataset::new(Shape::new(D, 1, 1), K, images, labels, "badly scaled".as_ref()).unwrap()
}

/// (G_S + λI) as a dense matrix in θ's layout (weights [out·D + j], biases [K·D + out]).
fn closed_form(data: &Dataset, indices: &[usize]) -> Vec<Vec<f64>> {
    let n = K * (D + 1);
    let at = |out: usize, j: usize| if j < D { out * D + j } else { K * D + out };
    let mut g = vec![vec![0.0; n]; n];
    for &i in indices {
        let x: Vec<f64> = data.images_of(i..i + 1).iter().map(|&v| v as f64).chain([1.0]).collect();
        for out in 0..K {
            for a in 0..=D {
                for b in 0..=D {
                    g[at(out, a)][at(out, b)] += 2.0 / indices.len() as f64 * x[a] * x[b];
                }
            }
        }
    }
    let damping = LAMBDA + 1.0 / (C * data.len() as f64);
    for (i, row) in g.iter_mut().enumerate() {
        row[i] += damping;
    }
    g
}

/// x with a x = b, by Gaussian elimination with partial pivoting.
fn solve_dense(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (above, below) = a.split_at_mut(col + 1);
        let pivot_row = &above[col];
        for (offset, row) in below.iter_mut().enumerate() {
            let factor = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= factor * p;
            }
            b[col + 1 + offset] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let rest: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    x
}

#[test]
fn preconditioned_cg_solves_a_known_system_in_fewer_steps_with_the_same_answer() {
    let gpu = gpu();
    let data = badly_scaled();
    let network = Network::new(data.shape, &[LayerSpec::dense(K)]).unwrap();
    let n = network.param_count();
    let problem = Problem::new(network.clone(), Loss::SquaredError, C).unwrap();
    let theta = gpu.upload(&random_vec(&mut rng(22), n), "θ").unwrap();
    let options = SubsampleOptions { size: L, seed: 1, memory_budget: None };
    let s = Subsample::new(&Execution::new(gpu), &problem, &data, &theta, &options).unwrap();
    let g_host = random_vec(&mut rng(23), n);
    let grad = gpu.upload(&g_host, "g").unwrap();
    let g_norm = g_host.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();

    let matrix = closed_form(&data, s.indices());
    let want = solve_dense(matrix.clone(), g_host.iter().map(|&v| -(v as f64)).collect());
    let settings = CgSettings { xi: 1e-4, max_steps: 500, check_every: 4, sums_per_product: 1 };
    let run = |buffers: &mut CgBuffers| -> (CgOutcome, Vec<f32>) {
        let outcome = cg::solve(gpu, &s, LAMBDA, &grad, g_norm, &settings, buffers).unwrap();
        (outcome, gpu.read(&buffers.direction).unwrap())
    };
    let (plain, s_plain) = run(&mut CgBuffers::new(gpu, n).unwrap());
    // Enough probes for a fair estimate of the diagonal; exponent 1 is Jacobi's.
    let pc_options = PreconditionerOptions { probes: 64, exponent: 1.0 };
    let mut pc_buffers = CgBuffers::preconditioned(gpu, n, Some(pc_options)).unwrap();
    let (pc, s_pc) = run(&mut pc_buffers);
    assert_eq!((plain.stop, pc.stop), (Some(Stop::Converged), Some(Stop::Converged)), "{plain:?} {pc:?}");
    assert!(2 * pc.steps <= plain.steps, "preconditioned {} steps, plain {}", pc.steps, plain.steps);

    // Both solve the system: each residual within ξ‖g‖ computed afresh in f64, and each
    // solution the elimination's to a tolerance relative to the sum of absolute terms.
    for (name, got) in [("plain", &s_plain), ("preconditioned", &s_pc)] {
        let mut residual = 0.0;
        for (row, gi) in matrix.iter().zip(&g_host) {
            let r: f64 = row.iter().zip(got.iter()).map(|(a, x)| a * *x as f64).sum::<f64>() + *gi as f64;
            residual += r * r;
        }
        assert!(residual.sqrt() <= 2e-4 * g_norm, "{name}: ‖r‖ = {} against ‖g‖ = {g_norm}", residual.sqrt());
        let scale: f64 = want.iter().map(|v| v.abs()).sum();
        let error: f64 = want.iter().zip(got.iter()).map(|(w, x)| (w - *x as f64).abs()).sum();
        assert!(error <= 1e-2 * scale, "{name}: Σ|s − s*| = {error} against Σ|s*| = {scale}");
    }

    // M⁻¹ is the inverse of diag(G_S) + λ + 1/(C·l) within the probes' error, and sᵀG_S s
    // from the preconditioned recurrences (Σ α ρ − λ sᵀs, G_S with its 1/(C·l)) equals a
    // product computed afresh.
    let m_inv = gpu.read(pc_buffers.inverse_preconditioner().unwrap()).unwrap();
    for (i, (row, m)) in matrix.iter().zip(&m_inv).enumerate() {
        let ratio = 1.0 / (row[i] * *m as f64);
        assert!((0.5..2.0).contains(&ratio), "diagonal {i}: estimate/true = {ratio}");
    }
    let product = gpu.zeros::<f32>(n, "G s").unwrap();
    let direction = gpu.upload(&s_pc, "s").unwrap();
    s.gauss_newton_product(&direction, 0.0, &product).unwrap();
    let terms: Vec<f64> =
        s_pc.iter().zip(&gpu.read(&product).unwrap()).map(|(a, b)| *a as f64 * *b as f64).collect();
    let (direct, scale) = (terms.iter().sum::<f64>(), terms.iter().map(|t| t.abs()).sum::<f64>());
    assert!((pc.s_g_s - direct).abs() <= 1e-3 * scale, "recurrence {} vs product {direct}", pc.s_g_s);
}
