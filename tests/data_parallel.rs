//! Data parallelism by samples, with the ranks as threads of one process (comm::ThreadGroup):
//! f and ∇f over P shards of the training set, added up, are f and ∇f over the whole set, and
//! every rank holds the same numbers bit for bit.

mod common;

use std::time::Duration;

use common::{execution, gpu};
use newton_wgpu::comm::{shard_of, Communicator, ThreadGroup};
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::{cnn4_small, LayerSpec, Network};
use newton_wgpu::objective::{Evaluation, Objective};
use newton_wgpu::optim::cg::PreconditionerOptions;
use newton_wgpu::Problem;

/// `body(comm)` on each of `size` ranks, each a thread; the results by rank.
fn on_ranks<T: Send>(size: usize, body: impl Fn(&ThreadGroup) -> T + Sync) -> Vec<T> {
    let ranks = ThreadGroup::new(size, Duration::from_secs(120));
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranks.iter().map(|comm| scope.spawn(|| body(comm))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn f_and_its_gradient_over_shards_add_up_to_those_over_the_whole_set() {
    let (split, _) = common::bundled_mnist(301);
    let train = split.train;
    let network = cnn4_small(train.shape, train.classes).unwrap();
    let problem = Problem::new(network, Loss::CrossEntropy, 0.01).unwrap();
    let init = problem.network.init_params(3);
    let n = init.len();
    // Chunks of 64 samples, so that shards of 100 or 151 span several.
    let execution = execution().with_bsize(64);

    let theta = gpu().upload(&init, "θ").unwrap();
    let grad = gpu().zeros::<f32>(n, "∇f").unwrap();
    let mut objective = Objective::new(&execution, &problem).unwrap();
    let whole = objective.value_and_grad(&train, &theta, &grad).unwrap();
    let whole_grad = gpu().read(&grad).unwrap();
    let whole_value = objective.value(&train, &theta).unwrap();

    for size in [1, 2, 3] {
        let results: Vec<(Evaluation, Evaluation, Vec<f32>)> = on_ranks(size, |comm| {
            let mine = shard_of(&train, comm);
            let theta = gpu().upload(&init, "θ").unwrap();
            let grad = gpu().zeros::<f32>(n, "∇f").unwrap();
            let mut objective = Objective::new(&execution, &problem).unwrap();
            let total = train.len();
            let eval = objective.value_and_grad_across(comm, &mine, total, &theta, &grad).unwrap();
            let value = objective.value_across(comm, &mine, total, &theta).unwrap();
            (eval, value, gpu().read(&grad).unwrap())
        });
        for (rank, (eval, value, g)) in results.iter().enumerate() {
            assert_eq!(
                (eval, value, g),
                (&results[0].0, &results[0].1, &results[0].2),
                "rank {rank} of {size}"
            );
            // The shards' sums differ from the whole set's only in the order of the additions.
            assert!((eval.f - whole.f).abs() <= 1e-6 * whole.f, "{size} ranks: f {} vs {}", eval.f, whole.f);
            assert!((value.f - whole_value.f).abs() <= 1e-6 * whole_value.f, "{size} ranks");
            assert!((eval.grad_norm - whole.grad_norm).abs() <= 1e-5 * whole.grad_norm, "{size} ranks");
            let scale: f32 = whole_grad.iter().map(|v| v.abs()).sum();
            let error: f32 = g.iter().zip(&whole_grad).map(|(a, b)| (a - b).abs()).sum();
            assert!(error <= 1e-5 * scale, "{size} ranks: ∇f differs by {error} of {scale}");
            if size == 1 {
                assert_eq!((eval, g), (&whole, &whole_grad), "one rank is the single-process path");
            }
        }
    }
}

/// SGD across ranks takes the steps one process takes: each mini-batch drawn as one process
/// draws it, each rank's part over the members in its shard, the parts summed.
#[test]
fn sgd_across_ranks_takes_the_steps_of_one_process() {
    use newton_wgpu::data::Dataset;
    use newton_wgpu::optim::sgd::{Sgd, SgdOptions};
    use newton_wgpu::optim::EpochRecord;
    let (split, _) = common::bundled_mnist(150);
    let (train, test) = (split.train, split.test.head(100));
    let network = common::small_network(train.shape);
    let problem = Problem::new(network, Loss::CrossEntropy, 0.01).unwrap();
    let init = problem.network.init_params(5);
    // 150 samples in batches of 32: the last batch is short, and with 2 or 3 ranks some
    // batches fall wholly in one shard.
    let options =
        SgdOptions { epochs: 2, batch: 32, lr: 0.05, momentum: 0.9, decay: 0.01, ..Default::default() };
    let execution = execution();
    let run = |comm: &dyn Communicator, train: &Dataset, test: &Dataset| {
        let theta = gpu().upload(&init, "θ").unwrap();
        let mut sgd = Sgd::across(&execution, &problem, comm, train, 150, &options).unwrap();
        let mut records: Vec<EpochRecord> = vec![sgd.initial_record(train, &theta).unwrap()];
        while !sgd.finished() {
            let mut record = sgd.advance(train, &theta).unwrap();
            record.elapsed_s = 0.0;
            record.test_acc = Some(sgd.accuracy(test, &theta).unwrap());
            records.push(record);
        }
        (records, gpu().read(&theta).unwrap())
    };
    let (want, want_theta) = run(&newton_wgpu::comm::SingleProcess, &train, &test);
    let scale: f32 = want_theta.iter().map(|v| v.abs()).sum();
    for size in [1, 2, 3] {
        let results: Vec<(Vec<EpochRecord>, Vec<f32>)> =
            on_ranks(size, |comm| run(comm, &shard_of(&train, comm), &shard_of(&test, comm)));
        for (rank, (records, theta)) in results.iter().enumerate() {
            assert_eq!((records, theta), (&results[0].0, &results[0].1), "rank {rank} of {size}");
        }
        let (records, theta) = &results[0];
        if size == 1 {
            assert_eq!((records, theta), (&want, &want_theta), "one rank is the single-process path");
        }
        for (got, want) in records.iter().zip(&want) {
            let (a, b) = (got.f.unwrap(), want.f.unwrap());
            assert!((a - b).abs() <= 1e-4 * b, "{size} ranks: {got:?} vs {want:?}");
            if let (Some(a), Some(b)) = (got.running_loss, want.running_loss) {
                assert!((a - b).abs() <= 1e-4 * b, "{size} ranks: {got:?} vs {want:?}");
            }
            let (a, b) = (got.test_acc.unwrap_or(0.0), want.test_acc.unwrap_or(0.0));
            assert!((a - b).abs() <= 0.02, "{size} ranks: accuracy {a} vs {b}");
        }
        let error: f32 = theta.iter().zip(&want_theta).map(|(a, b)| (a - b).abs()).sum();
        assert!(error <= 1e-4 * scale, "{size} ranks: θ differs by {error} of {scale}");
    }
}

/// Newton-CG across ranks takes the iterations one process takes: the same accepted steps
/// and CG step counts, f within summation order.
#[test]
fn newton_across_ranks_takes_the_iterations_of_one_process() {
    newton_across_ranks(None);
}

/// So does preconditioned Newton-CG: each probe's product is summed like a CG product, so M
/// is one process's.
#[test]
fn preconditioned_newton_across_ranks_takes_the_iterations_of_one_process() {
    newton_across_ranks(Some(PreconditionerOptions::default()));
}

fn newton_across_ranks(precondition: Option<PreconditionerOptions>) {
    use newton_wgpu::optim::newton::{Newton, NewtonOptions};
    use newton_wgpu::optim::IterationRecord;
    let (split, _) = common::bundled_mnist(240);
    let (train, test) = (split.train, split.test.head(100));
    let network = common::small_network(train.shape);
    let problem = Problem::new(network, Loss::CrossEntropy, 0.01).unwrap();
    let init = problem.network.init_params(6);
    let options =
        NewtonOptions { iter_max: 3, gn_size: Some(31), lambda: 0.1, precondition, ..Default::default() };
    let execution = execution();
    // Each rank holds its shard alone; S's members come from whichever rank holds them.
    let run =
        |comm: &dyn Communicator, held: &newton_wgpu::data::Dataset, test: &newton_wgpu::data::Dataset| {
            let theta = gpu().upload(&init, "θ").unwrap();
            let mut newton = Newton::across(&execution, &problem, comm, held, train.len(), &options).unwrap();
            let mut records: Vec<IterationRecord> = vec![newton.initial_record(held, &theta).unwrap()];
            while !newton.finished() {
                let mut record = newton.step(held, &theta).unwrap().unwrap();
                (record.elapsed_s, record.cg_s, record.comm_s) = (0.0, 0.0, 0.0);
                record.test_acc = Some(newton.accuracy(test, &theta).unwrap());
                records.push(record);
            }
            (records, gpu().read(&theta).unwrap())
        };
    let (want, want_theta) = run(&newton_wgpu::comm::SingleProcess, &train, &test);
    assert!(want.iter().skip(1).any(|r| r.cg_iters > 1), "{want:?}");
    let scale: f32 = want_theta.iter().map(|v| v.abs()).sum();
    for size in [2, 3] {
        let results: Vec<(Vec<IterationRecord>, Vec<f32>)> =
            on_ranks(size, |comm| run(comm, &shard_of(&train, comm), &shard_of(&test, comm)));
        for (rank, (records, theta)) in results.iter().enumerate() {
            assert_eq!((records, theta), (&results[0].0, &results[0].1), "rank {rank} of {size}");
        }
        let (records, theta) = &results[0];
        assert_eq!(records.len(), want.len());
        for (got, want) in records.iter().zip(&want) {
            let same = (got.iter, got.accepted, got.cg_iters, got.alpha);
            assert_eq!(same, (want.iter, want.accepted, want.cg_iters, want.alpha), "{size} ranks");
            assert!((got.f - want.f).abs() <= 1e-4 * want.f, "{size} ranks: {got:?} vs {want:?}");
            assert!((got.lambda - want.lambda).abs() <= 1e-12 * want.lambda, "{size} ranks");
            let (a, b) = (got.test_acc.unwrap_or(0.0), want.test_acc.unwrap_or(0.0));
            assert!((a - b).abs() <= 0.02, "{size} ranks: accuracy {a} vs {b}");
        }
        let error: f32 = theta.iter().zip(&want_theta).map(|(a, b)| (a - b).abs()).sum();
        assert!(error <= 1e-3 * scale, "{size} ranks: θ differs by {error} of {scale}");
    }
}

/// SGN across ranks takes the steps one process takes: each mini-batch and its S drawn as one
/// process draws them, each rank computing over its part by position (here 50 over 3 ranks:
/// 17, 17, 16; S = 20: 7, 7, 6), f_B, ∇f_B, the products and f_B(θ + s) summed. The network
/// is smooth (tanh, average pooling), so that rounding in the sums cannot move a unit across a
/// kink and make a step jump (see tests/mpi.rs).
#[test]
fn sgn_across_ranks_takes_the_steps_of_one_process() {
    sgn_across_ranks(None);
}

/// So does preconditioned SGN.
#[test]
fn preconditioned_sgn_across_ranks_takes_the_steps_of_one_process() {
    sgn_across_ranks(Some(PreconditionerOptions::default()));
}

fn sgn_across_ranks(precondition: Option<PreconditionerOptions>) {
    use newton_wgpu::nn::{LayerSpec, Network};
    use newton_wgpu::optim::sgn::{Sgn, SgnOptions};
    use newton_wgpu::optim::EpochRecord;
    let (split, _) = common::bundled_mnist(200);
    let (train, test) = (split.train, split.test.head(100));
    let layers = [
        LayerSpec::conv(5, 4, 2, 2),
        LayerSpec::Tanh,
        LayerSpec::AvgPool { size: 2, stride: None, padding: 0 },
        LayerSpec::dense(10),
    ];
    let network = Network::new(train.shape, &layers).unwrap();
    let problem = Problem::new(network, Loss::CrossEntropy, 1.0).unwrap();
    let init = problem.network.init_params(7);
    let options = SgnOptions {
        epochs: 2,
        batch: 50,
        gn_size: Some(20),
        evals_per_epoch: 2,
        precondition,
        ..Default::default()
    };
    let execution = execution();
    // Each rank holds its shard alone; a mini-batch's members come from whichever rank
    // holds them.
    let run =
        |comm: &dyn Communicator, held: &newton_wgpu::data::Dataset, test: &newton_wgpu::data::Dataset| {
            let theta = gpu().upload(&init, "θ").unwrap();
            let mut sgn = Sgn::across(&execution, &problem, comm, held, train.len(), &options).unwrap();
            let mut records: Vec<EpochRecord> = vec![sgn.initial_record(held, &theta).unwrap()];
            while !sgn.finished() {
                let mut record = sgn.advance(held, &theta).unwrap();
                (record.elapsed_s, record.cg_s) = (0.0, Some(0.0));
                record.test_acc = Some(sgn.accuracy(test, &theta).unwrap());
                records.push(record);
            }
            (records, gpu().read(&theta).unwrap())
        };
    let (want, want_theta) = run(&newton_wgpu::comm::SingleProcess, &train, &test);
    assert!(want.iter().any(|r| r.cg_iters.unwrap() > 0), "{want:?}");
    let scale: f32 = want_theta.iter().map(|v| v.abs()).sum();
    for size in [2, 3] {
        let results: Vec<(Vec<EpochRecord>, Vec<f32>)> =
            on_ranks(size, |comm| run(comm, &shard_of(&train, comm), &shard_of(&test, comm)));
        for (rank, (records, theta)) in results.iter().enumerate() {
            assert_eq!((records, theta), (&results[0].0, &results[0].1), "rank {rank} of {size}");
        }
        let (records, theta) = &results[0];
        assert_eq!(records.len(), want.len());
        for (got, want) in records.iter().zip(&want) {
            let same = (got.epoch, got.step, got.cg_iters, got.rejected, got.lambda);
            assert_eq!(
                same,
                (want.epoch, want.step, want.cg_iters, want.rejected, want.lambda),
                "{size} ranks"
            );
            if let (Some(a), Some(b)) = (got.f, want.f) {
                assert!((a - b).abs() <= 1e-4 * b, "{size} ranks: {got:?} vs {want:?}");
            }
            if let (Some(a), Some(b)) = (got.running_loss, want.running_loss) {
                assert!((a - b).abs() <= 1e-4 * b, "{size} ranks: {got:?} vs {want:?}");
            }
            let (a, b) = (got.test_acc.unwrap_or(0.0), want.test_acc.unwrap_or(0.0));
            assert!((a - b).abs() <= 0.02, "{size} ranks: accuracy {a} vs {b}");
        }
        let error: f32 = theta.iter().zip(&want_theta).map(|(a, b)| (a - b).abs()).sum();
        assert!(error <= 1e-4 * scale, "{size} ranks: θ differs by {error} of {scale}");
    }
}

/// A communicator that counts its sums.
struct Counting<'c> {
    inner: &'c dyn Communicator,
    sums: std::cell::Cell<usize>,
}

impl Communicator for Counting<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), newton_wgpu::comm::CommError> {
        self.sums.set(self.sums.get() + 1);
        self.inner.sum_f32(values)
    }
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), newton_wgpu::comm::CommError> {
        self.sums.set(self.sums.get() + 1);
        self.inner.sum_f64(values)
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), newton_wgpu::comm::CommError> {
        self.inner.broadcast(bytes)
    }
}

/// Across ranks a CG step waits for the device once per piece of its product and sums once
/// per piece: the product's pieces are read as the backward pass finishes them, and rank 0's
/// stop test travels with the first (the product runs behind the device's stop test, as one
/// process's does). Counted, not timed: read-backs at the device layer, sums at the
/// communicator. Whatever the pieces, the solve takes one process's steps to the same stop
/// and every rank's direction is the same, bit for bit (a piece's values are summed as the
/// whole product's are).
#[test]
fn a_cg_step_across_ranks_reads_and_sums_once_per_piece_of_its_product() {
    let (split, _) = common::bundled_mnist(120);
    let network = Network::new(
        split.train.shape,
        &[
            LayerSpec::conv(3, 4, 1, 1),
            LayerSpec::Relu,
            LayerSpec::MaxPool { size: 2, stride: None },
            LayerSpec::conv(3, 6, 1, 1),
            LayerSpec::Relu,
            LayerSpec::MaxPool { size: 2, stride: None },
            LayerSpec::dense(10),
        ],
    )
    .unwrap();
    let layers_with_params = network.layers().iter().filter(|layer| layer.param_count() > 0).count();
    assert_eq!(layers_with_params, 3);
    // S stored, and S in chunks of 5 whose forward pass each product recomputes (the pieces
    // are cut in the last chunk's backward pass: earlier chunks write every part again).
    for chunk in [None, Some(5)] {
        let made =
            pieces_of_solves_across_ranks(network.clone(), &split.train, &[1, 2, 3, 64], &[2, 3], chunk);
        for (asked, made) in made {
            // A cut after each layer's part at most.
            assert_eq!(made, asked.min(layers_with_params), "{asked} pieces asked, chunks {chunk:?}");
        }
    }
}

/// The same in a residual network, whose backward pass finishes parameters out of their
/// order in θ (a block's shortcut and body, scalar biases and scales between its layers):
/// a piece is read only once every value in it is final.
#[test]
fn a_residual_networks_product_is_summed_in_pieces_as_in_one() {
    let (split, _) = common::bundled_mnist(60);
    let network = common::residual_network(split.train.shape, split.train.classes);
    let made = pieces_of_solves_across_ranks(network, &split.train, &[1, 5, 64], &[2], None);
    assert_eq!(made[..2], [(1, 1), (5, 5)]);
    assert!(made[2].1 > 5, "{made:?}");
}

/// Solves across each number of ranks in `sizes` with each number of pieces in `asked`,
/// checking the counts and the directions as above, with S stored or (`chunk`) in chunks of
/// that many samples; returns (asked, made) per entry of `asked`.
fn pieces_of_solves_across_ranks(
    network: Network,
    train: &newton_wgpu::data::Dataset,
    asked: &[usize],
    sizes: &[usize],
    chunk: Option<usize>,
) -> Vec<(usize, usize)> {
    use newton_wgpu::curvature::{Subsample, SubsampleOptions};
    use newton_wgpu::nn::device::{Passes, Workspace};
    use newton_wgpu::optim::cg::{self, CgBuffers, CgSettings};
    let problem = Problem::new(network, Loss::CrossEntropy, 0.01).unwrap();
    let init = problem.network.init_params(4);
    let n = init.len();
    // A device of its own, so that no other test's reads are counted.
    let device = newton_wgpu::gpu::Gpu::new().unwrap();
    let execution = newton_wgpu::Execution::new(&device).with_bsize(chunk.unwrap_or(1024));
    const S: usize = 24;
    let solve = |comm: &dyn Communicator, held: &newton_wgpu::data::Dataset, pieces: usize| {
        // A memory budget just short of the rank's part of S stored whole makes it chunked.
        let part = newton_wgpu::comm::shard(S, comm.rank(), comm.size()).len();
        let memory_budget =
            chunk.map(|_| Workspace::bytes_for(&problem.network, part, Passes::Curvature) - 1);
        let options = SubsampleOptions { size: S, seed: 9, memory_budget };
        let settings = CgSettings { xi: 0.01, max_steps: 40, check_every: 1, sums_per_product: pieces };
        let counting = Counting { inner: comm, sums: std::cell::Cell::new(0) };
        let theta = device.upload(&init, "θ").unwrap();
        let grad = device.zeros::<f32>(n, "∇f").unwrap();
        let mut objective = Objective::new(&execution, &problem).unwrap();
        let eval = objective.value_and_grad_across(comm, held, train.len(), &theta, &grad).unwrap();
        let subsample =
            Subsample::across(&execution, &problem, comm, held, train.len(), &theta, &options).unwrap();
        assert_eq!(subsample.is_chunked(), chunk.is_some(), "{}", subsample.describe());
        assert!(chunk.is_none_or(|c| subsample.chunk_size() == c), "{}", subsample.describe());
        let mut buffers = CgBuffers::new(&device, n).unwrap();
        // Between two sums (barriers), only the ranks' solves run on the shared device.
        comm.sum_f64(&mut [0.0]).unwrap();
        let before = device.stats().readbacks;
        let outcome = cg::solve_across(
            &device,
            &counting,
            &subsample,
            1.0,
            &grad,
            eval.grad_norm,
            &settings,
            &mut buffers,
        )
        .unwrap();
        comm.sum_f64(&mut [0.0]).unwrap();
        let readbacks = device.stats().readbacks - before;
        // Every rank has counted before any reads its direction.
        comm.sum_f64(&mut [0.0]).unwrap();
        let direction = device.read(&buffers.direction).unwrap();
        let pieces = buffers.sums_per_step().unwrap_or(1);
        (outcome, counting.sums.get(), readbacks, pieces, direction)
    };
    let (one, ..) = solve(&newton_wgpu::comm::SingleProcess, train, 1);
    assert!(one.steps >= 4 && one.stop.is_some(), "{one:?}");
    let mut made = vec![0; asked.len()];
    for &size in sizes {
        let mut directions = Vec::new();
        for (entry, &asked) in asked.iter().enumerate() {
            let results = on_ranks(size, |comm| solve(comm, &shard_of(train, comm), asked));
            for (rank, (outcome, sums, readbacks, pieces, direction)) in results.into_iter().enumerate() {
                let at = format!("rank {rank} of {size}, {asked} pieces asked, {pieces} made");
                assert!(pieces <= asked && (rank == 0 || pieces == made[entry]), "{at}");
                made[entry] = pieces;
                assert_eq!((outcome.steps, outcome.stop), (one.steps, one.stop), "{at}");
                // A sum per piece of each step's product, one that sees the stop (the first
                // piece's), and the final figures'.
                assert_eq!(sums, one.steps * pieces + 2, "{at}: sums");
                // Every rank reads each piece of every product, that of the one that sees the
                // stop included, and the final figures.
                let per_rank = (one.steps + 1) * pieces + 1;
                assert_eq!(readbacks as usize, size * per_rank, "{at}: read-backs");
                directions.push((at, direction));
            }
        }
        let (first, reference) = &directions[0];
        for (at, direction) in &directions[1..] {
            assert!(direction == reference, "{at}: the direction differs from {first}'s");
        }
    }
    asked.iter().copied().zip(made).collect()
}
