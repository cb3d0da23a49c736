//! Data parallelism by samples, with the ranks as threads of one process (comm::ThreadGroup):
//! f and ∇f over P shards of the training set, added up, are f and ∇f over the whole set, and
//! every rank holds the same numbers bit for bit.

mod common;

use std::time::Duration;

use common::{execution, gpu};
use newton_wgpu::comm::{shard, Communicator, ThreadGroup};
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::cnn4_small;
use newton_wgpu::objective::{Evaluation, Objective};
use newton_wgpu::Problem;

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
        let ranks = ThreadGroup::new(size, Duration::from_secs(120));
        let results: Vec<(Evaluation, Evaluation, Vec<f32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|comm| {
                    let (train, problem, init) = (&train, &problem, &init);
                    scope.spawn(move || {
                        let mine =
                            train.select(&shard(train.len(), comm.rank(), comm.size()).collect::<Vec<_>>());
                        let theta = gpu().upload(init, "θ").unwrap();
                        let grad = gpu().zeros::<f32>(n, "∇f").unwrap();
                        let mut objective = Objective::new(&execution, problem).unwrap();
                        let total = train.len();
                        let eval =
                            objective.value_and_grad_across(comm, &mine, total, &theta, &grad).unwrap();
                        let value = objective.value_across(comm, &mine, total, &theta).unwrap();
                        (eval, value, gpu().read(&grad).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
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
