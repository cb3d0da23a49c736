//! Fixup's ResNet-8 learns the bundled digits (as they are, 28×28) under Newton-CG, from
//! Fixup's start: the last convolution of every block and the dense layer at zero; SGN and SGD
//! lower its objective.
//!
//! From that start the network's output is 0 and only the dense layer moves at first; the
//! blocks open up once it has. Newton-CG gets there within a few iterations; the first-order
//! and mini-batch runs that fit a test on the software GPU do not (nor does PyTorch's
//! reference FixupResNet under SGD: near chance after 4 epochs of 600 digits). The runs are
//! sized for the software GPU, on 300 digits.

mod common;

use common::{execution, gpu};
use newton_wgpu::data::Dataset;
use newton_wgpu::loss::Loss;
use newton_wgpu::nn::resnet8;
use newton_wgpu::optim::newton::{self, NewtonOptions};
use newton_wgpu::optim::sgd::{self, SgdOptions};
use newton_wgpu::optim::sgn::{self, SgnOptions};
use newton_wgpu::optim::Record;
use newton_wgpu::Problem;

/// On 300 digits simpleNN's C = 0.01 weighs θᵀθ/2 against the loss a hundred times as much
/// as on MNIST's 60,000; C = 1 keeps the balance of the paper's runs.
const C: f64 = 1.0;

fn digits() -> (Dataset, Dataset, Problem) {
    let (split, _) = common::bundled_mnist(300);
    let network = resnet8(split.train.shape, split.train.classes).unwrap();
    (split.train, split.test.head(300), Problem::new(network, Loss::CrossEntropy, C).unwrap())
}

/// f at each epoch's record.
fn epoch_objectives(records: &[Record]) -> Vec<f64> {
    let f = |r: &Record| match r {
        Record::Epoch(epoch) => epoch.f.unwrap(),
        Record::Newton(_) => panic!("SGD and SGN record epochs"),
    };
    records.iter().map(f).collect()
}

/// The test accuracy of each record.
fn accuracies(records: &[Record]) -> Vec<f64> {
    records.iter().map(|r| r.test_acc().unwrap()).collect()
}

#[test]
fn resnet8_learns_digits_by_newton_cg() {
    let (train, test, problem) = digits();
    let theta = gpu().upload(&problem.network.init_params(1), "θ").unwrap();
    let options = NewtonOptions { iter_max: 8, lambda: 0.01, ..Default::default() };
    let mut records = Vec::new();
    newton::train(&execution(), &problem, &train, Some(&test), &theta, &options, &mut |r: &Record| {
        records.push(r.clone())
    })
    .unwrap();
    let accuracy = accuracies(&records);
    assert!(accuracy[0] < 0.15 && *accuracy.last().unwrap() >= 0.18, "{accuracy:?}");
}

/// SGN takes ResNet-8's steps: f falls (a rejected step leaves it). It does not learn the
/// digits at this size (measured: 13.3%, one class, after 8 full-batch steps of ≤ 10 CG steps
/// from λ = 0.01), so that is all this checks.
#[test]
fn sgn_lowers_resnet8s_objective() {
    let (train, test, problem) = digits();
    let theta = gpu().upload(&problem.network.init_params(2), "θ").unwrap();
    let options = SgnOptions { epochs: 3, batch: 100, lambda: 0.01, ..Default::default() };
    let mut records = Vec::new();
    sgn::train(&execution(), &problem, &train, Some(&test), &theta, &options, &mut |r: &Record| {
        records.push(r.clone())
    })
    .unwrap();
    let f = epoch_objectives(&records);
    assert_eq!(f.len(), 4);
    assert!(f.windows(2).all(|pair| pair[1] <= pair[0]) && f[3] < f[0], "f by epoch: {f:?}");
}

/// SGD takes ResNet-8's steps: f falls every epoch (at lr 0.01; at 0.1 with momentum 0.9 it
/// rose in the second). It does not learn the digits at this size (measured: 12.7% after 6
/// epochs of 16-digit batches at lr 0.1, momentum 0.9; PyTorch's reference FixupResNet stays
/// at chance for 4 epochs of 600 digits), so that is all this checks.
#[test]
fn sgd_lowers_resnet8s_objective() {
    let (train, test, problem) = digits();
    let theta = gpu().upload(&problem.network.init_params(3), "θ").unwrap();
    let options = SgdOptions { epochs: 3, batch: 16, lr: 0.01, momentum: 0.9, ..Default::default() };
    let mut records = Vec::new();
    sgd::train(&execution(), &problem, &train, Some(&test), &theta, &options, &mut |r: &Record| {
        records.push(r.clone())
    })
    .unwrap();
    let f = epoch_objectives(&records);
    assert_eq!(f.len(), 4);
    assert!(f.windows(2).all(|pair| pair[1] < pair[0]), "f by epoch: {f:?}");
}
