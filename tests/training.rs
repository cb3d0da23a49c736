//! Training end to end on small problems: Newton-CG and SGD learn; Newton-CG solves a convex
//! problem exactly; the robustness rules hold; models and checkpoints round-trip.

mod common;

use common::{execution, gpu, random_vec, rng};
use newton_wgpu::data::{Dataset, Normalizer};
use newton_wgpu::loss::Loss;
use newton_wgpu::model::{Checkpoint, Model, ModelError, TrainedOn};
use newton_wgpu::nn::{cnn4_small, LayerSpec, Network, Shape};
use newton_wgpu::objective::Objective;
use newton_wgpu::optim::newton::{self, Newton, NewtonOptions, NewtonState};
use newton_wgpu::optim::sgd::{self, Sgd, SgdOptions, SgdState};
use newton_wgpu::optim::{IterationRecord, Record};
use newton_wgpu::{Error, Execution, Problem};

/// simpleNN's C.
const C: f64 = 0.01;

fn problem(network: &Network, loss: Loss) -> Problem {
    Problem::new(network.clone(), loss, C).unwrap()
}

fn mnist(train: usize, test: usize) -> (Dataset, Dataset) {
    let (split, _) = common::bundled_mnist(train);
    (split.train, split.test.head(test))
}

fn newton_records(
    problem: &Problem,
    train: &Dataset,
    test: Option<&Dataset>,
    theta: &newton_wgpu::gpu::GpuBuffer<f32>,
    options: &NewtonOptions,
) -> Result<Vec<IterationRecord>, Error> {
    let mut records = Vec::new();
    newton::train(&execution(), problem, train, test, theta, options, &mut |r: &Record| {
        if let Record::Newton(r) = r {
            records.push(r.clone())
        }
    })?;
    Ok(records)
}

#[test]
fn newton_lowers_f_at_every_accepted_iteration_and_learns_digits() {
    let (train, test) = mnist(600, 300);
    let network = cnn4_small(train.shape, train.classes).unwrap();
    let theta = gpu().upload(&network.init_params(1), "θ").unwrap();
    let options = NewtonOptions { iter_max: 8, ..Default::default() };
    let problem = problem(&network, Loss::CrossEntropy);
    let records = newton_records(&problem, &train, Some(&test), &theta, &options).unwrap();
    // θ0's record, then one per iteration, each with f after its step.
    assert_eq!(records.len(), 9);
    let first = &records[0];
    assert_eq!((first.iter, first.elapsed_s, first.cg_iters), (0, 0.0, 0), "{first:?}");
    assert!(first.grad_norm.is_some() && first.test_acc.is_some(), "{first:?}");
    for pair in records.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_eq!(after.iter, before.iter + 1);
        if after.accepted {
            assert!(after.f < before.f, "f rose after an accepted step: {:?}", pair);
        }
        // The gradient after a full step is known (its trial point was evaluated with it),
        // after a shortened one not.
        assert_eq!(after.grad_norm.is_some(), after.alpha == 1.0 || !after.accepted, "{after:?}");
    }
    let fresh = Objective::new(&execution(), &problem).unwrap().value(&train, &theta).unwrap().f;
    assert_eq!(records.last().unwrap().f, fresh, "the last record's f is f at the θ it leaves");
    let accuracy = records.last().unwrap().test_acc.unwrap();
    assert!(accuracy >= 0.75, "8 Newton iterations on 600 digits reached only {accuracy}");
}

#[test]
fn sgd_learns_digits() {
    let (train, test) = mnist(600, 300);
    let network = cnn4_small(train.shape, train.classes).unwrap();
    let theta = gpu().upload(&network.init_params(1), "θ").unwrap();
    let options = SgdOptions { epochs: 6, batch: 32, momentum: 0.9, ..Default::default() };
    let problem = problem(&network, Loss::CrossEntropy);
    let mut records = Vec::new();
    sgd::train(&execution(), &problem, &train, Some(&test), &theta, &options, &mut |r: &Record| {
        records.push(r.clone())
    })
    .unwrap();
    let Some(Record::Epoch(last)) = records.last() else { panic!("no epoch reported") };
    assert_eq!(last.epoch, 6);
    assert!(last.test_acc.unwrap() >= 0.65, "6 SGD epochs on 600 digits reached only {:?}", last.test_acc);
}

#[test]
fn one_sgd_step_is_the_reference_gradient_step() {
    let (train, network) = small_problem();
    let batch = train.head(16);
    let theta0 = network.init_params(9);
    let theta = gpu().upload(&theta0, "θ").unwrap();
    // One epoch of one mini-batch holding the whole (16-sample) set: θ1 = θ0 − lr·∇f(θ0).
    let options = SgdOptions { epochs: 1, batch: 16, lr: 0.1, ..Default::default() };
    let problem = problem(&network, Loss::CrossEntropy);
    sgd::train(&execution(), &problem, &batch, None, &theta, &options, &mut |_: &Record| {}).unwrap();
    let theta64: Vec<f64> = theta0.iter().map(|&t| t as f64).collect();
    let (_, grad) = newton_wgpu::reference::objective(&network, problem.loss, problem.c, &theta64, &batch);
    let got = gpu().read(&theta).unwrap();
    for (i, (g, t)) in grad.iter().zip(&theta64).enumerate() {
        let want = t - options.lr * g;
        // The step is small against θ: compare relative to |θ| + lr·|∇f|.
        assert!(
            (got[i] as f64 - want).abs() <= 1e-5 * (t.abs() + options.lr * g.abs()),
            "θ[{i}] = {} want {want}",
            got[i]
        );
    }
}

/// Solves A x = b by Gaussian elimination with partial pivoting (A small and well-posed).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let factor = a[row][col] / pivot_row[col];
            for (entry, pivot) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *entry -= factor * pivot;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x
}

#[test]
fn newton_solves_linear_least_squares_to_the_normal_equations() {
    let (d, k, l) = (6, 3, 40);
    let mut rng = rng(5);
    let images = random_vec(&mut rng, d * l);
    let labels: Vec<u32> = (0..l).map(|i| (i * 7 % k) as u32).collect();
    let data =
        Dataset::new(Shape::new(d, 1, 1), k, images.clone(), labels.clone(), "synthetic".as_ref()).unwrap();
    let network = Network::new(data.shape, &[LayerSpec::dense(k)]).unwrap();
    let theta = gpu().upload(&network.init_params(2), "θ").unwrap();
    // |S| = l: G is the exact Hessian and one undamped Newton step solves the problem.
    let options = NewtonOptions {
        iter_max: 3,
        gn_size: Some(l),
        lambda: 0.0,
        xi: 1e-4,
        cg_max: 50,
        cg_check_every: 1,
        ..Default::default()
    };
    newton_records(&problem(&network, Loss::SquaredError), &data, None, &theta, &options).unwrap();
    let got = gpu().read(&theta).unwrap();

    // f = θᵀθ/(2Cl) + (1/l) Σ ‖W x + b − y‖²: for each output j,
    // (I/(C·l) + (2/l) X̃ᵀX̃) w̃_j = (2/l) X̃ᵀ y_j, with x̃ = [x; 1] and w̃_j = [W_j; b_j].
    let c = C;
    for j in 0..k {
        let mut a = vec![vec![0.0; d + 1]; d + 1];
        let mut b = vec![0.0; d + 1];
        for i in 0..l {
            let x: Vec<f64> = images[i * d..(i + 1) * d].iter().map(|&v| v as f64).chain([1.0]).collect();
            let y = if labels[i] as usize == j { 1.0 } else { 0.0 };
            for r in 0..=d {
                for s in 0..=d {
                    a[r][s] += 2.0 / l as f64 * x[r] * x[s];
                }
                b[r] += 2.0 / l as f64 * x[r] * y;
            }
        }
        for (r, row) in a.iter_mut().enumerate() {
            row[r] += 1.0 / (c * l as f64);
        }
        let want = solve(a, b);
        for (r, w) in want.iter().enumerate() {
            let at = if r < d { j * d + r } else { k * d + j };
            let err = (got[at] as f64 - w).abs();
            assert!(err <= 1e-4 * (1.0 + w.abs()), "θ[{at}] = {} but the normal equations give {w}", got[at]);
        }
    }
}

fn small_problem() -> (Dataset, Network) {
    let (train, _) = mnist(200, 0);
    let network = common::small_network(train.shape);
    (train, network)
}

#[test]
fn lambda_zero_and_a_tiny_cg_budget_end_normally() {
    let (train, network) = small_problem();
    let theta = gpu().upload(&network.init_params(3), "θ").unwrap();
    let problem = problem(&network, Loss::SquaredError);
    let options = NewtonOptions { lambda: 0.0, iter_max: 3, ..Default::default() };
    let records = newton_records(&problem, &train, None, &theta, &options).unwrap();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.lambda.is_finite()));

    let options = NewtonOptions { cg_max: 1, iter_max: 2, ..Default::default() };
    let records = newton_records(&problem, &train, None, &theta, &options).unwrap();
    assert!(records[1..].iter().all(|r| r.cg_iters == 1), "{records:?}");
    assert!(records[1].accepted, "one CG step is a scaled steepest-descent step and must be accepted");
}

#[test]
fn a_line_search_that_must_fail_takes_no_step_and_raises_lambda() {
    let (train, network) = small_problem();
    let initial = network.init_params(4);
    let theta = gpu().upload(&initial, "θ").unwrap();
    // Armijo with η = 0.999 asks f to fall by almost the whole linear prediction, which
    // curvature forbids for any α ≥ 1/8.
    let options = NewtonOptions { eta: 0.999, max_halvings: 3, iter_max: 2, ..Default::default() };
    let records =
        newton_records(&problem(&network, Loss::SquaredError), &train, None, &theta, &options).unwrap();
    assert_eq!(records.len(), 3);
    for (i, r) in records.iter().enumerate().skip(1) {
        assert!(!r.accepted && r.alpha == 0.0, "iteration {i}: {r:?}");
        assert_eq!(r.lambda, 1.5f64.powi(i as i32));
        // No step: f and ‖∇f‖ are θ0's.
        assert_eq!((r.f, r.grad_norm), (records[0].f, records[0].grad_norm), "no step was taken");
    }
    assert_eq!(gpu().read(&theta).unwrap(), initial);
    // Boosts stop at the largest λ instead of reaching infinity, which a checkpoint could not
    // hold: 1e18·1e3 is bounded to 1e20, and so is every later boost.
    let options = NewtonOptions { lambda: 1e18, boost: 1e3, ..options };
    let records =
        newton_records(&problem(&network, Loss::SquaredError), &train, None, &theta, &options).unwrap();
    let lambdas: Vec<f64> = records.iter().skip(1).map(|r| r.lambda).collect();
    assert_eq!(lambdas, [newton_wgpu::rules::MAX_LAMBDA; 2]);
    let too_large = NewtonOptions { lambda: 1e21, ..options };
    let error = too_large.validate(train.len()).unwrap_err();
    assert!(error.to_string().contains("lambda") && error.to_string().contains("1e20"), "{error}");
}

#[test]
fn nan_in_the_data_stops_training_with_the_iteration_and_keeps_theta() {
    let (mut train, network) = small_problem();
    train.images[5] = f32::NAN;
    let initial = network.init_params(5);
    let theta = gpu().upload(&initial, "θ").unwrap();
    let problem = problem(&network, Loss::SquaredError);
    let error = newton_records(&problem, &train, None, &theta, &NewtonOptions::default()).unwrap_err();
    assert!(matches!(error, Error::Diverged { iteration: 1, .. }), "{error}");
    assert!(error.to_string().contains("iteration 1"), "{error}");
    assert_eq!(gpu().read(&theta).unwrap(), initial);

    let error = sgd::train(
        &execution(),
        &problem,
        &train,
        None,
        &theta,
        &SgdOptions::default(),
        &mut |_: &Record| {},
    )
    .unwrap_err();
    assert!(matches!(error, Error::Diverged { iteration: 1, .. }), "{error}");
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("training");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn models_round_trip_and_refuse_another_architecture() {
    let (train, network) = small_problem();
    let normalizer = Normalizer::fit(&train);
    let model = Model {
        network: network.clone(),
        theta: network.init_params(6),
        normalizer: Some(normalizer),
        loss: Loss::CrossEntropy,
    };
    let path = scratch("model.safetensors");
    model.save(&path).unwrap();
    assert_eq!(Model::load_for(&path, &network).unwrap(), model);
    // Standardised inputs: the deviations travel too.
    let standard = Model { normalizer: Some(Normalizer::fit_standard(&train)), ..model.clone() };
    assert!(standard.normalizer.as_ref().unwrap().std.is_some());
    let standard_path = scratch("model-standard.safetensors");
    standard.save(&standard_path).unwrap();
    assert_eq!(Model::load_for(&standard_path, &network).unwrap(), standard);
    let other = cnn4_small(train.shape, 10).unwrap();
    let error = Model::load_for(&path, &other).unwrap_err();
    assert!(matches!(error, ModelError::Architecture { .. }), "{error}");
    assert!(error.to_string().contains("model.safetensors"), "{error}");
    std::fs::write(&path, b"not a model").unwrap();
    assert!(matches!(Model::load(&path).unwrap_err(), ModelError::NotSafetensors { .. }));
}

/// Inputs are divided by `input_std`: a deviation that is not positive is refused by name.
#[test]
fn models_with_deviations_that_are_not_positive_are_refused() {
    let (train, network) = small_problem();
    let mut normalizer = Normalizer::fit_standard(&train);
    normalizer.std = Some(vec![0.0]);
    let model = Model {
        network: network.clone(),
        theta: network.init_params(6),
        normalizer: Some(normalizer),
        loss: Loss::CrossEntropy,
    };
    let path = scratch("zero-deviation.safetensors");
    model.save(&path).unwrap();
    let error = Model::load(&path).unwrap_err();
    assert!(matches!(&error, ModelError::Tensor { name, .. } if name == "input_std"), "{error}");
    assert!(
        error.to_string().contains("zero-deviation.safetensors") && error.to_string().contains("positive"),
        "{error}"
    );
}

/// A model or checkpoint holding a value that is not finite is refused, naming the tensor and
/// the index: scored, it would report chance accuracy without a word.
#[test]
fn models_with_values_that_are_not_finite_are_refused_naming_the_tensor() {
    let (train, network) = small_problem();
    let model = Model {
        network: network.clone(),
        theta: network.init_params(6),
        normalizer: Some(Normalizer::fit(&train)),
        loss: Loss::CrossEntropy,
    };
    let path = scratch("poisoned.safetensors");
    let weights_end = network.conv_geometries().next().unwrap().bias_offset;
    for (value, at, tensor, index) in [
        (f32::NAN, 5, "layers.0.weight", 5),
        (f32::INFINITY, weights_end + 1, "layers.0.bias", 1),
        (f32::NEG_INFINITY, network.param_count() - 1, "layers.3.bias", 9),
    ] {
        let mut poisoned = model.clone();
        poisoned.theta[at] = value;
        poisoned.save(&path).unwrap();
        let error = Model::load(&path).unwrap_err();
        assert!(
            matches!(&error, ModelError::NotFinite { name, index: i, .. } if name == tensor && *i == index),
            "{value} at {at}: {error}"
        );
        assert!(error.to_string().contains("poisoned.safetensors"), "{error}");
    }
    let mut poisoned = model.clone();
    poisoned.normalizer.as_mut().unwrap().mean[7] = f32::NAN;
    poisoned.save(&path).unwrap();
    let error = Model::load(&path).unwrap_err();
    assert!(
        matches!(&error, ModelError::NotFinite { name, index: 7, .. } if name == "input_mean"),
        "{error}"
    );
    // A checkpoint that could not be resumed is never written over a good one: a velocity or
    // θ with a NaN, or an optimiser field that is not finite (JSON's null).
    let mut velocity = vec![0.0; network.param_count()];
    velocity[2] = 12345.0;
    let trained_on = TrainedOn { c: C, samples: train.len(), limit: None, ..Default::default() };
    let good = Checkpoint { model, state: r#"{"lambda":1.5}"#.into(), velocity: Some(velocity), trained_on };
    good.save(&path).unwrap();
    let mut bad_velocity = good.clone();
    bad_velocity.velocity.as_mut().unwrap()[2] = f32::NAN;
    let mut bad_theta = good.clone();
    bad_theta.model.theta[4] = f32::INFINITY;
    let bad_state = Checkpoint { state: r#"{"lambda":null}"#.into(), ..good.clone() };
    for (bad, wanted) in [(bad_velocity, "optimizer.velocity"), (bad_theta, "θ"), (bad_state, "`lambda`")] {
        let error = bad.save(&path).unwrap_err();
        assert!(error.to_string().contains(wanted), "{error}");
        assert_eq!(Checkpoint::load_for(&path, &network).unwrap(), good, "the good checkpoint stays");
    }
    // A file changed by someone else is refused on load, naming the tensor and the index.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == 12345.0f32.to_le_bytes()).unwrap();
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let error = Checkpoint::load_for(&path, &network).unwrap_err();
    assert!(matches!(&error, ModelError::Checksum { name, .. } if name == "optimizer.velocity"), "{error}");
}

/// Every tensor's bytes carry a CRC-32 in the metadata, verified on load: one flipped bit in
/// a weight is refused, naming the file and the tensor; a file written before checksums loads
/// the same values, with a warning that they are unverified.
#[test]
fn tensors_are_checksummed_and_older_files_load_with_a_warning() {
    let (train, network) = small_problem();
    let mut model = Model {
        network: network.clone(),
        theta: network.init_params(6),
        normalizer: Some(Normalizer::fit(&train)),
        loss: Loss::CrossEntropy,
    };
    let marker = 0.123_456_79f32;
    let bias_at = network.conv_geometries().nth(1).unwrap().bias_offset + 3;
    model.theta[bias_at] = marker;
    let path = scratch("checksummed.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::read(&path).unwrap();
    assert_eq!((loaded.value, loaded.warning), (model.clone(), None));

    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == marker.to_le_bytes()).unwrap();
    for bit in [0u8, 7] {
        let mut flipped = bytes.clone();
        // The lowest bit of the mantissa, then the sign: both leave a finite value.
        flipped[at + usize::from(bit / 7) * 3] ^= 1 << bit;
        std::fs::write(&path, &flipped).unwrap();
        let error = Model::load(&path).unwrap_err();
        assert!(matches!(&error, ModelError::Checksum { name, .. } if name == "layers.3.bias"), "{error}");
        assert!(error.to_string().contains("checksummed.safetensors"), "{error}");
    }

    // The same file as it was written before checksums: the tensors and the metadata less
    // `checksums`.
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    assert!(metadata.remove("checksums").is_some());
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    std::fs::write(&path, safetensors::serialize(tensors.tensors(), Some(metadata)).unwrap()).unwrap();
    let loaded = Model::read(&path).unwrap();
    assert_eq!(loaded.value, model);
    let warning = loaded.warning.expect("a warning for a file without checksums");
    assert!(warning.contains("no checksums") && warning.contains("checksummed.safetensors"), "{warning}");
}

/// A tampered optimiser state is refused by `resume`, naming the field; a valid one is taken.
/// An empty data set cannot be scored.
#[test]
fn a_tampered_optimizer_state_is_refused_naming_the_field() {
    let (train, network) = small_problem();
    let (execution, problem) = (execution(), problem(&network, Loss::CrossEntropy));
    let options = NewtonOptions { iter_max: 5, ..Default::default() };
    let mut newton = Newton::new(&execution, &problem, &train, &options).unwrap();
    let good = NewtonState { iteration: 5, lambda: 0.0, elapsed_s: 0.0 };
    for (state, field) in [
        (NewtonState { lambda: f64::NAN, ..good.clone() }, "lambda"),
        (NewtonState { lambda: -1.0, ..good.clone() }, "lambda"),
        (NewtonState { lambda: f64::INFINITY, ..good.clone() }, "lambda"),
        (NewtonState { iteration: 6, ..good.clone() }, "iteration"),
        (NewtonState { elapsed_s: -0.5, ..good.clone() }, "elapsed_s"),
        (NewtonState { elapsed_s: f64::NAN, ..good.clone() }, "elapsed_s"),
    ] {
        let error = newton.resume(state.clone()).unwrap_err();
        assert!(matches!(&error, Error::State { field: f, .. } if *f == field), "{state:?}: {error}");
        assert_eq!(newton.state.iteration, 0, "a refused state is not taken");
    }
    newton.resume(good.clone()).unwrap();
    assert_eq!(newton.state, good);
    assert!(newton.finished());

    let options = SgdOptions { epochs: 2, ..Default::default() };
    let mut sgd = Sgd::new(&execution, &problem, &train, &options).unwrap();
    let n = network.param_count();
    let good = SgdState { epoch: 2, step: 4, batch_in_epoch: 0, elapsed_s: 1.0 };
    let mut nan = vec![0.0; n];
    nan[n - 1] = f32::NAN;
    for (state, velocity, field) in [
        (SgdState { epoch: 3, ..good.clone() }, vec![0.0; n], "epoch"),
        (SgdState { elapsed_s: f64::INFINITY, ..good.clone() }, vec![0.0; n], "elapsed_s"),
        (good.clone(), vec![0.0; n - 1], "velocity"),
        (good.clone(), nan, "velocity"),
    ] {
        let error = sgd.resume(state.clone(), &velocity).unwrap_err();
        assert!(matches!(&error, Error::State { field: f, .. } if *f == field), "{state:?}: {error}");
        assert_eq!(sgd.state.epoch, 0, "a refused state is not taken");
    }
    sgd.resume(good.clone(), &vec![0.25; n]).unwrap();
    assert_eq!(sgd.state, good);
    assert!(gpu().read(&sgd.velocity).unwrap().iter().all(|&v| v == 0.25));

    let theta = gpu().upload(&network.init_params(1), "θ").unwrap();
    let error = sgd.accuracy(&train.head(0), &theta).unwrap_err();
    assert!(matches!(error, Error::EmptyData { .. }), "{error}");
}

/// Records without the wall-clock fields, which differ between runs.
fn timeless(mut r: IterationRecord) -> IterationRecord {
    r.elapsed_s = 0.0;
    r.cg_s = 0.0;
    r
}

#[test]
fn a_resumed_newton_run_equals_an_uninterrupted_one() {
    let (train, network) = small_problem();
    let options = NewtonOptions { iter_max: 4, ..Default::default() };
    let (execution, problem) = (execution(), problem(&network, Loss::SquaredError));
    let straight = gpu().upload(&network.init_params(7), "θ").unwrap();
    let mut newton = Newton::new(&execution, &problem, &train, &options).unwrap();
    let mut want = Vec::new();
    while !newton.finished() {
        want.push(timeless(newton.step(&train, &straight).unwrap().unwrap()));
    }

    let theta = gpu().upload(&network.init_params(7), "θ").unwrap();
    let path = scratch("newton.checkpoint");
    let mut got = Vec::new();
    {
        let first_two = NewtonOptions { iter_max: 2, ..options.clone() };
        let mut first = Newton::new(&execution, &problem, &train, &first_two).unwrap();
        while !first.finished() {
            got.push(timeless(first.step(&train, &theta).unwrap().unwrap()));
        }
        let model = Model {
            network: network.clone(),
            theta: gpu().read(&theta).unwrap(),
            normalizer: None,
            loss: problem.loss,
        };
        let trained_on = TrainedOn { c: problem.c, samples: train.len(), limit: None, ..Default::default() };
        Checkpoint { model, state: serde_json::to_string(&first.state).unwrap(), velocity: None, trained_on }
            .save(&path)
            .unwrap();
    }
    let checkpoint = Checkpoint::load_for(&path, &network).unwrap();
    let theta = gpu().upload(&checkpoint.model.theta, "θ").unwrap();
    let mut resumed = Newton::new(&execution, &problem, &train, &options).unwrap();
    resumed.resume(serde_json::from_str::<NewtonState>(&checkpoint.state).unwrap()).unwrap();
    while !resumed.finished() {
        got.push(timeless(resumed.step(&train, &theta).unwrap().unwrap()));
    }
    assert_eq!(got, want);
    assert_eq!(gpu().read(&theta).unwrap(), gpu().read(&straight).unwrap());
}

#[test]
fn a_resumed_sgd_run_equals_an_uninterrupted_one() {
    let (train, network) = small_problem();
    // Three records an epoch: the checkpoint falls inside the second epoch.
    let options = SgdOptions {
        epochs: 3,
        batch: 50,
        momentum: 0.9,
        decay: 0.01,
        evals_per_epoch: 3,
        ..Default::default()
    };
    let (execution, problem) = (execution(), problem(&network, Loss::SquaredError));
    let straight = gpu().upload(&network.init_params(8), "θ").unwrap();
    let mut sgd = Sgd::new(&execution, &problem, &train, &options).unwrap();
    let mut want = Vec::new();
    while !sgd.finished() {
        let record = sgd.advance(&train, &straight).unwrap();
        want.push((record.f, record.running_loss, record.step));
    }
    assert_eq!(want.len(), 3 * 3);
    assert_eq!(want.iter().filter(|(f, _, _)| f.is_some()).count(), 3, "f at the end of each epoch");

    let theta = gpu().upload(&network.init_params(8), "θ").unwrap();
    let path = scratch("sgd.checkpoint");
    let mut got = Vec::new();
    {
        let mut first = Sgd::new(&execution, &problem, &train, &options).unwrap();
        for _ in 0..4 {
            let record = first.advance(&train, &theta).unwrap();
            got.push((record.f, record.running_loss, record.step));
        }
        // 4 mini-batches an epoch, recorded after 2, 3 and 4 of them.
        assert_eq!((first.state.epoch, first.state.batch_in_epoch), (1, 2), "{:?}", first.state);
        let model = Model {
            network: network.clone(),
            theta: gpu().read(&theta).unwrap(),
            normalizer: None,
            loss: problem.loss,
        };
        let velocity = Some(gpu().read(&first.velocity).unwrap());
        let trained_on = TrainedOn { c: problem.c, samples: train.len(), limit: None, ..Default::default() };
        Checkpoint { model, state: serde_json::to_string(&first.state).unwrap(), velocity, trained_on }
            .save(&path)
            .unwrap();
    }
    let checkpoint = Checkpoint::load_for(&path, &network).unwrap();
    let theta = gpu().upload(&checkpoint.model.theta, "θ").unwrap();
    let mut resumed = Sgd::new(&execution, &problem, &train, &options).unwrap();
    let state = serde_json::from_str::<SgdState>(&checkpoint.state).unwrap();
    resumed.resume(state, checkpoint.velocity.as_ref().unwrap()).unwrap();
    while !resumed.finished() {
        let record = resumed.advance(&train, &theta).unwrap();
        got.push((record.f, record.running_loss, record.step));
    }
    assert_eq!(got, want);
    assert_eq!(gpu().read(&theta).unwrap(), gpu().read(&straight).unwrap());
}

#[test]
fn a_cg_step_is_one_submit_creates_nothing_and_never_drains_the_queue() {
    use newton_wgpu::curvature::{Subsample, SubsampleOptions};
    use newton_wgpu::optim::cg::{self, CgBuffers, CgSettings};
    // A device of its own, so that tests running in parallel do not touch its counters.
    let gpu = newton_wgpu::gpu::Gpu::new().unwrap();
    let (train, network) = small_problem();
    let theta = gpu.upload(&network.init_params(10), "θ").unwrap();
    let grad = gpu.upload(&random_vec(&mut rng(11), network.param_count()), "g").unwrap();
    let options = SubsampleOptions { size: 20, seed: 1, memory_budget: None };
    let problem = problem(&network, Loss::SquaredError);
    let s = Subsample::new(&Execution::new(&gpu), &problem, &train, &theta, &options).unwrap();
    let mut buffers = CgBuffers::new(&gpu, network.param_count()).unwrap();
    // ξ tiny: CG runs all 12 steps.
    let settings = CgSettings { xi: 1e-12, max_steps: 12, check_every: 4, sums_per_product: 1 };
    cg::solve(&gpu, &s, 1.0, &grad, 1.0, &settings, &mut buffers).unwrap(); // records the programs
    let (start, step, end) = buffers.dispatches_per_program().unwrap();
    let before = gpu.stats();
    let outcome = cg::solve(&gpu, &s, 1.0, &grad, 1.0, &settings, &mut buffers).unwrap();
    let after = gpu.stats();
    assert_eq!(outcome.steps, 12);
    assert!(!outcome.broke_down && outcome.stop.is_none(), "{outcome:?}");
    // One submit to start, one per 4 steps with its read, one for the final dots.
    assert_eq!(after.submits - before.submits, 1 + 12 / 4 + 1);
    assert_eq!(after.dispatches - before.dispatches, (start + 12 * step + end) as u64);
    assert_eq!(after.readbacks - before.readbacks, 12 / 4 + 1);
    assert_eq!(after.objects, before.objects, "a solve on a known subsample creates nothing");
    // The only wait that drains the queue is the final read, after CG.
    assert_eq!(after.waits - before.waits, 1);
    // sᵀ(G + λI)s from the recurrences equals a product computed afresh.
    let product = gpu.zeros::<f32>(network.param_count(), "Gs").unwrap();
    s.gauss_newton_product(&buffers.direction, 0.0, &product).unwrap();
    let (direction, gs_values) = (gpu.read(&buffers.direction).unwrap(), gpu.read(&product).unwrap());
    let terms: Vec<f64> = direction.iter().zip(&gs_values).map(|(a, b)| *a as f64 * *b as f64).collect();
    let s_g_s: f64 = terms.iter().sum();
    let scale: f64 = terms.iter().map(|t| t.abs()).sum();
    assert!((outcome.s_g_s - s_g_s).abs() <= 1e-3 * scale, "recurrence {} vs product {s_g_s}", outcome.s_g_s);
}

/// CG's step kernels finish their dot products by workgroup sums: by subgroups where the
/// adapter has them (lavapipe does), else by a tree. Both reach the same solution, plain and
/// preconditioned, step for step, to rounding.
#[test]
fn cg_solves_alike_with_either_workgroup_sum() {
    use newton_wgpu::curvature::{Subsample, SubsampleOptions};
    use newton_wgpu::gpu::Gpu;
    use newton_wgpu::optim::cg::{self, CgBuffers, CgSettings, PreconditionerOptions};
    let (tree, default) = common::tree_and_default_gpus();
    let (train, network) = small_problem();
    let n = network.param_count();
    let problem = problem(&network, Loss::CrossEntropy);
    let (theta, grad) = (network.init_params(15), random_vec(&mut rng(16), n));
    let grad_norm = grad.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let solve = |gpu: &Gpu, preconditioner: Option<PreconditionerOptions>| {
        let theta = gpu.upload(&theta, "θ").unwrap();
        let grad = gpu.upload(&grad, "g").unwrap();
        let options = SubsampleOptions { size: 30, seed: 3, memory_budget: None };
        let s = Subsample::new(&Execution::new(gpu), &problem, &train, &theta, &options).unwrap();
        let mut buffers = CgBuffers::preconditioned(gpu, n, preconditioner).unwrap();
        // ξ tiny: every solve runs all its steps.
        let settings = CgSettings { xi: 1e-12, max_steps: 15, check_every: 4, sums_per_product: 1 };
        let outcome = cg::solve(gpu, &s, 0.5, &grad, 1.0, &settings, &mut buffers).unwrap();
        (outcome, gpu.read(&buffers.direction).unwrap())
    };
    for preconditioner in [None, Some(PreconditionerOptions::default())] {
        let (by_tree, s_tree) = solve(&tree, preconditioner);
        let (by_default, s_default) = solve(&default, preconditioner);
        assert_eq!((by_tree.steps, by_tree.stop), (15, None), "{by_tree:?}");
        assert_eq!((by_default.steps, by_default.stop), (15, None), "{by_default:?}");
        let scale: f64 = s_tree.iter().map(|v| v.abs() as f64).sum();
        let gap: f64 = s_tree.iter().zip(&s_default).map(|(a, b)| (a - b).abs() as f64).sum();
        assert!(scale > 0.0 && gap <= 1e-4 * scale, "{preconditioner:?}: Σ|s| {scale}, Σ|Δs| {gap}");
        let relative = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs());
        assert!(relative(by_tree.gs, by_default.gs) <= 1e-4, "{by_tree:?} vs {by_default:?}");
        // The residual is a difference of terms as large as g: rounding is relative to ‖g‖.
        let residual_gap = (by_tree.residual_norm - by_default.residual_norm).abs();
        assert!(residual_gap <= 1e-6 * grad_norm, "‖g‖ {grad_norm}: {by_tree:?} vs {by_default:?}");
    }
}

/// The device ends CG itself; the host only looks now and then. Whatever it looks at, the
/// solution and the step count are those of looking after every step.
#[test]
fn how_often_the_host_looks_changes_nothing_in_the_solution() {
    use newton_wgpu::curvature::{Subsample, SubsampleOptions};
    use newton_wgpu::optim::cg::{self, CgBuffers, CgSettings, Stop};
    let gpu = gpu();
    let (train, network) = small_problem();
    let theta = gpu.upload(&network.init_params(12), "θ").unwrap();
    let grad = gpu.upload(&random_vec(&mut rng(13), network.param_count()), "g").unwrap();
    let options = SubsampleOptions { size: 30, seed: 2, memory_budget: None };
    let problem = problem(&network, Loss::CrossEntropy);
    let s = Subsample::new(&execution(), &problem, &train, &theta, &options).unwrap();
    let mut buffers = CgBuffers::new(gpu, network.param_count()).unwrap();
    let mut solve = |xi: f64, check_every: usize| {
        let settings = CgSettings { xi, max_steps: 40, check_every, sums_per_product: 1 };
        let outcome = cg::solve(gpu, &s, 0.5, &grad, 1.0, &settings, &mut buffers).unwrap();
        (outcome, gpu.read(&buffers.direction).unwrap())
    };
    let (every, s_every) = solve(0.05, 1);
    assert_eq!(every.stop, Some(Stop::Converged), "{every:?}");
    assert!(every.steps > 1 && every.steps < 40, "{every:?}");
    assert!(every.residual_norm <= 0.05, "{every:?}");
    for check_every in [2, 5, 40] {
        let (outcome, s_other) = solve(0.05, check_every);
        assert_eq!(outcome, every, "looking every {check_every} steps");
        assert!(s_other.iter().zip(&s_every).all(|(a, b)| a.to_bits() == b.to_bits()), "s differs");
    }
    // λ = 0 with a zero gradient breaks down at once: p = 0, so pᵀ(G + λI)p = 0. The device
    // decides before dividing, never having to recognise 0/0 (a compiler may assume floats
    // are finite).
    let zero = gpu.zeros::<f32>(network.param_count(), "0").unwrap();
    let settings = CgSettings { xi: 0.1, max_steps: 10, check_every: 3, sums_per_product: 1 };
    let outcome = cg::solve(gpu, &s, 0.0, &zero, 0.0, &settings, &mut buffers).unwrap();
    assert_eq!((outcome.steps, outcome.stop), (0, Some(Stop::Breakdown)), "{outcome:?}");
    assert!(outcome.broke_down);
    assert!(gpu.read(&buffers.direction).unwrap().iter().all(|&v| v == 0.0));
    // A NaN in the gradient makes rᵀr NaN: not finite, whatever the compiler assumes.
    let mut poisoned = random_vec(&mut rng(14), network.param_count());
    poisoned[3] = f32::NAN;
    let poisoned = gpu.upload(&poisoned, "g with NaN").unwrap();
    let outcome = cg::solve(gpu, &s, 0.5, &poisoned, 1.0, &settings, &mut buffers).unwrap();
    assert_eq!((outcome.steps, outcome.stop), (0, Some(Stop::NonFinite)), "{outcome:?}");
    assert!(outcome.broke_down);
}

/// A network whose θ no storage binding of the adapter holds is refused before anything is
/// allocated, naming its largest layer (it once named neither the layer nor a real size).
#[test]
fn a_network_too_large_for_the_device_names_its_largest_layer() {
    let limit = gpu().max_binding_bytes();
    let width = 1 << 16;
    // One dense layer over 2^16 inputs just past the limit (within 2^31 − 1 values while the
    // limit is under 8 GiB).
    let units = (limit / 4 / (width as u64 + 1) + 1) as usize;
    let specs = [LayerSpec::Flatten, LayerSpec::dense(units), LayerSpec::Relu, LayerSpec::dense(10)];
    let network = Network::new(Shape::new(1, 1, width), &specs).unwrap();
    let problem = Problem::new(network, Loss::CrossEntropy, C).unwrap();
    let error = problem.check_fits(gpu()).unwrap_err();
    let largest = format!("the largest layer is layer 2 (dense), {} parameters", units * (width + 1));
    assert!(matches!(error, Error::ParamsTooLarge { .. }) && error.to_string().contains(&largest), "{error}");
}

/// An observer that asks to stop ends every optimiser's run after the record it has just
/// seen, with θ at that record's point, and Newton-CG says why.
#[test]
fn an_observer_stops_each_optimiser_after_the_record_it_asks() {
    use newton_wgpu::optim::newton::StopReason;
    use newton_wgpu::optim::sgn::{self, SgnOptions};
    use newton_wgpu::optim::Observer;
    struct StopAfter {
        wanted: usize,
        seen: Vec<Record>,
    }
    impl Observer for StopAfter {
        fn observe(&mut self, record: &Record) {
            self.seen.push(record.clone());
        }
        fn should_stop(&self) -> bool {
            self.seen.len() >= self.wanted
        }
    }
    let (train, network) = small_problem();
    let problem = problem(&network, Loss::CrossEntropy);
    let fresh = || gpu().upload(&network.init_params(2), "θ").unwrap();
    let mut observer = StopAfter { wanted: 2, seen: Vec::new() };
    let options = NewtonOptions { iter_max: 5, gn_size: Some(20), ..Default::default() };
    let (reason, state) =
        newton::train(&execution(), &problem, &train, None, &fresh(), &options, &mut observer).unwrap();
    assert_eq!((reason, state.iteration, observer.seen.len()), (StopReason::Stopped, 1, 2));
    let mut observer = StopAfter { wanted: 3, seen: Vec::new() };
    let options = SgdOptions { epochs: 5, batch: 50, ..Default::default() };
    let state = sgd::train(&execution(), &problem, &train, None, &fresh(), &options, &mut observer).unwrap();
    assert_eq!((state.epoch, observer.seen.len()), (2, 3));
    let mut observer = StopAfter { wanted: 1, seen: Vec::new() };
    let options = SgnOptions { epochs: 5, batch: 50, ..Default::default() };
    let state = sgn::train(&execution(), &problem, &train, None, &fresh(), &options, &mut observer).unwrap();
    assert_eq!((state.epoch, observer.seen.len()), (0, 1));
}
