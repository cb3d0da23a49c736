//! Stochastic Gauss-Newton: it minimises a convex problem (one dense layer with softmax
//! cross-entropy) to a stated tolerance, checked with the CPU reference's gradient; it learns
//! digits; a resumed run (preconditioned, stopped inside an epoch) records what an
//! uninterrupted one does, bit for bit; a tampered state is refused.

mod common;

use common::{execution, gpu, random_vec, rng};
use newton_wgpu::data::Dataset;
use newton_wgpu::loss::Loss;
use newton_wgpu::model::{Checkpoint, Model, TrainedOn};
use newton_wgpu::nn::{LayerSpec, Network, Shape};
use newton_wgpu::optim::cg::PreconditionerOptions;
use newton_wgpu::optim::sgn::{self, Sgn, SgnOptions, SgnState};
use newton_wgpu::optim::{EpochRecord, Record};
use newton_wgpu::{reference, Error, Problem};

const C: f64 = 0.01;

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn sgn_minimises_a_convex_problem_to_a_small_gradient() {
    // 64 samples of 12 features in 3 classes, one dense layer: f is strictly convex. The
    // mini-batch is the whole set (so f_B = f) and S all of it, so that every step is a
    // damped Gauss-Newton step on f itself.
    let (d, k, l) = (12, 3, 64);
    let mut rng = rng(31);
    let labels: Vec<u32> = (0..l).map(|i| (i % k) as u32).collect();
    let images: Vec<f32> =
        (0..l * d).map(|i| random_vec(&mut rng, 1)[0] + (i / d % k) as f32 * 0.3).collect();
    let data = Dataset::new(Shape::new(d, 1, 1), k, images, labels, "convex".as_ref()).unwrap();
    let network = Network::new(data.shape, &[LayerSpec::dense(k)]).unwrap();
    let problem = Problem::new(network.clone(), Loss::CrossEntropy, C).unwrap();
    let theta0 = random_vec(&mut rng, network.param_count());
    let theta = gpu().upload(&theta0, "θ").unwrap();
    let options =
        SgnOptions { epochs: 12, batch: l, gn_size: Some(l), cg_steps: 40, xi: 1e-3, ..Default::default() };
    let mut records: Vec<EpochRecord> = Vec::new();
    sgn::train(&execution(), &problem, &data, None, &theta, &options, &mut |r: &Record| {
        if let Record::Epoch(r) = r {
            records.push(r.clone())
        }
    })
    .unwrap();
    assert_eq!(records.len(), 13, "θ0 and one record per step");
    // f_B = f never rises: a step that would raise it is refused.
    for pair in records.windows(2) {
        let (before, after) = (pair[0].f.unwrap(), pair[1].f.unwrap());
        assert!(after <= before, "f rose: {:?}", pair);
        if pair[1].rejected == Some(0) {
            assert!(after < before, "an accepted step did not lower f: {:?}", pair);
        }
    }
    // At the end ∇f, by the CPU reference in f64, is a thousandth of where it started.
    let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let (f0, g0) = reference::objective(&network, problem.loss, C, &as_f64(&theta0), &data);
    let theta_end = gpu().read(&theta).unwrap();
    let (f_end, g_end) = reference::objective(&network, problem.loss, C, &as_f64(&theta_end), &data);
    assert!(norm(&g_end) <= 1e-3 * norm(&g0), "‖∇f‖ {} from {}", norm(&g_end), norm(&g0));
    // And the last record's f is the reference's f there.
    let last = records.last().unwrap().f.unwrap();
    assert!((last - f_end).abs() <= 1e-5 * f_end.abs().max(1.0), "{last} vs reference {f_end} (f0 = {f0})");
}

#[test]
fn sgn_learns_digits() {
    let (split, _) = common::bundled_mnist(2000);
    let (train, test) = (split.train, split.test.head(500));
    let network = newton_wgpu::nn::cnn4_small(train.shape, train.classes).unwrap();
    let problem = Problem::new(network.clone(), Loss::CrossEntropy, C).unwrap();
    let theta = gpu().upload(&network.init_params(2), "θ").unwrap();
    let options = SgnOptions { epochs: 2, batch: 500, ..Default::default() };
    let mut accuracies = Vec::new();
    sgn::train(&execution(), &problem, &train, Some(&test), &theta, &options, &mut |r: &Record| {
        accuracies.push(r.test_acc().unwrap())
    })
    .unwrap();
    // 4 steps an epoch, 2 epochs: from chance to most digits right.
    assert_eq!(accuracies.len(), 3);
    assert!(accuracies[0] < 0.3 && *accuracies.last().unwrap() > 0.8, "{accuracies:?}");
}

fn small() -> (Dataset, Network) {
    let (split, _) = common::bundled_mnist(200);
    let network = common::small_network(split.train.shape);
    (split.train, network)
}

#[test]
fn a_resumed_sgn_run_records_what_an_uninterrupted_one_does() {
    let (train, network) = small();
    let problem = Problem::new(network.clone(), Loss::CrossEntropy, C).unwrap();
    // 4 mini-batches of 50 an epoch, recorded after 2 and 4; CG preconditioned, so that the
    // probes' seeds must follow the step too.
    let options = SgnOptions {
        epochs: 2,
        batch: 50,
        gn_size: Some(20),
        cg_steps: 4,
        evals_per_epoch: 2,
        precondition: Some(PreconditionerOptions::default()),
        ..Default::default()
    };
    let execution = execution();
    let record_of = |r: EpochRecord| (r.step, r.f, r.running_loss, r.lambda, r.cg_iters, r.rejected);
    let straight = gpu().upload(&network.init_params(4), "θ").unwrap();
    let mut sgn = Sgn::new(&execution, &problem, &train, &options).unwrap();
    let mut want = Vec::new();
    while !sgn.finished() {
        want.push(record_of(sgn.advance(&train, &straight).unwrap()));
    }
    assert_eq!(want.len(), 4);

    let theta = gpu().upload(&network.init_params(4), "θ").unwrap();
    let path = std::env::temp_dir().join(format!("newton-wgpu-sgn-{}.checkpoint", std::process::id()));
    let mut got = Vec::new();
    {
        let mut first = Sgn::new(&execution, &problem, &train, &options).unwrap();
        for _ in 0..3 {
            got.push(record_of(first.advance(&train, &theta).unwrap()));
        }
        assert_eq!((first.state.epoch, first.state.batch_in_epoch), (1, 2), "stopped inside an epoch");
        let model = Model {
            network: network.clone(),
            theta: gpu().read(&theta).unwrap(),
            normalizer: None,
            loss: problem.loss,
        };
        let trained_on = TrainedOn { c: C, samples: train.len(), limit: None, ..Default::default() };
        let state = serde_json::to_string(&first.state).unwrap();
        Checkpoint { model, state, velocity: None, trained_on }.save(&path).unwrap();
    }
    let checkpoint = Checkpoint::load_for(&path, &network).unwrap();
    let theta = gpu().upload(&checkpoint.model.theta, "θ").unwrap();
    let mut resumed = Sgn::new(&execution, &problem, &train, &options).unwrap();
    resumed.resume(serde_json::from_str::<SgnState>(&checkpoint.state).unwrap()).unwrap();
    while !resumed.finished() {
        got.push(record_of(resumed.advance(&train, &theta).unwrap()));
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(got, want);
    assert_eq!(gpu().read(&theta).unwrap(), gpu().read(&straight).unwrap(), "θ bit for bit");

    // A state no run of these options can be in is refused, naming the field, and not taken.
    let good = SgnState { epoch: 1, step: 4, batch_in_epoch: 0, lambda: 0.5, elapsed_s: 1.0 };
    for (state, field) in [
        (SgnState { lambda: f64::NAN, ..good.clone() }, "lambda"),
        (SgnState { epoch: 3, ..good.clone() }, "epoch"),
        (SgnState { batch_in_epoch: 4, ..good.clone() }, "batch_in_epoch"),
        (SgnState { elapsed_s: -1.0, ..good.clone() }, "elapsed_s"),
    ] {
        let mut fresh = Sgn::new(&execution, &problem, &train, &options).unwrap();
        match fresh.resume(state) {
            Err(Error::State { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: {other:?}"),
        }
        assert_eq!(fresh.state.step, 0, "a refused state is not taken");
    }
}
