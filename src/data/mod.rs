//! Data sets: MNIST IDX files (raw or gzipped), CIFAR-10 binary batches and LIBSVM files with
//! dense features; pixels scaled to [0, 1], then the per-pixel training mean subtracted.

mod augment;
mod cifar;
mod error;
mod files;
mod idx;
mod libsvm;
mod normalize;
mod stream;

use std::path::Path;

pub use augment::{gather_images, gather_images_at, Augment, AugmentDraw, CROP_PADDING};
pub use cifar::{load_cifar10_dir, read_cifar10_batch, write_cifar10_batch, CIFAR10_SHAPE};
pub use error::DataError;
pub use files::{DataFiles, Part, PartPlan};
pub use idx::{
    load_mnist_dir, read_idx_images, read_idx_labels, write_idx_images, write_idx_labels, MAX_SIDE,
    MNIST_CLASSES,
};
pub use libsvm::{read_libsvm, read_libsvm_part, LibsvmOptions};
pub use normalize::Normalizer;

use crate::nn::Shape;

/// Samples with their labels. Images are [len, c, h, w] row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub shape: Shape,
    pub classes: usize,
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Whether a mirror image shows the same class (CIFAR-10's objects; not digits), so that
    /// a horizontal flip may augment the data ([`Augment`]). False unless a loader knows.
    pub mirror_invariant: bool,
}

impl Dataset {
    /// Checks that the parts agree; `origin` names the data in errors.
    pub fn new(
        shape: Shape,
        classes: usize,
        images: Vec<f32>,
        labels: Vec<u32>,
        origin: &Path,
    ) -> Result<Self, DataError> {
        let Some(len) = shape.checked_len() else {
            return Err(DataError::FieldTooLarge {
                path: origin.to_owned(),
                field: "the sample shape",
                value: u64::MAX,
                max: usize::MAX as u64,
            });
        };
        if labels.len().checked_mul(len) != Some(images.len()) {
            return Err(DataError::CountMismatch {
                path: origin.to_owned(),
                images: images.len() / shape.len().max(1),
                labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
            return Err(DataError::LabelOutOfRange {
                path: origin.to_owned(),
                index,
                label: label as i64,
                classes,
            });
        }
        if let Some(index) = images.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NotFinite { path: origin.to_owned(), index: index / shape.len() });
        }
        Ok(Self { shape, classes, images, labels, mirror_invariant: false })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of samples `range`.
    pub fn images_of(&self, range: std::ops::Range<usize>) -> &[f32] {
        let d = self.shape.len();
        &self.images[range.start * d..range.end * d]
    }

    /// The first `n` samples (all if fewer).
    pub fn head(&self, n: usize) -> Dataset {
        self.select((0..n.min(self.len())).collect::<Vec<_>>().as_slice())
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            shape: self.shape,
            classes: self.classes,
            images: gather_images(self, indices, None),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            mirror_invariant: self.mirror_invariant,
        }
    }
}

/// A training set and a test set of the same shape, and optionally a validation set held out
/// of the training set.
#[derive(Clone, Debug)]
pub struct DataSplit {
    pub train: Dataset,
    pub test: Dataset,
    pub validation: Option<Dataset>,
}

impl DataSplit {
    /// Moves `count` training samples, chosen at random by `seed`, into the validation set
    /// (both parts keep the samples' original order). Fails unless both parts stay non-empty.
    pub fn hold_out(&mut self, count: usize, seed: u64) -> Result<(), DataError> {
        let (held, kept) = held_out(self.train.len(), count, seed)?;
        self.validation = Some(self.train.select(&held));
        self.train = self.train.select(&kept);
        Ok(())
    }

    /// Subtracts the per-pixel training mean from every set, as simpleNN does; returns it.
    pub fn normalize(&mut self) -> Normalizer {
        self.normalize_by(Normalizer::fit(&self.train))
    }

    /// Subtracts the per-pixel training mean and divides by each channel's training standard
    /// deviation, in every set (what ResNets are trained on); returns them.
    pub fn standardize(&mut self) -> Normalizer {
        self.normalize_by(Normalizer::fit_standard(&self.train))
    }

    /// [`DataSplit::normalize`] (or [`DataSplit::standardize`], if `standard`) when this split
    /// holds rank `comm.rank()`'s shards of sets whose training set has `train_total` samples:
    /// the statistics are summed over the ranks, the same on every rank. Collective.
    pub fn normalize_across(
        &mut self,
        comm: &dyn crate::comm::Communicator,
        train_total: usize,
        standard: bool,
    ) -> Result<Normalizer, crate::comm::CommError> {
        let normalizer = if standard {
            Normalizer::fit_standard_across(comm, &self.train, train_total)?
        } else {
            Normalizer::fit_across(comm, &self.train, train_total)?
        };
        Ok(self.normalize_by(normalizer))
    }

    fn normalize_by(&mut self, normalizer: Normalizer) -> Normalizer {
        normalizer.apply(&mut self.train);
        normalizer.apply(&mut self.test);
        if let Some(validation) = &mut self.validation {
            normalizer.apply(validation);
        }
        normalizer
    }
}

/// The samples `count` of `len` chosen by `seed` to be held out, and the others, each in
/// increasing order. Fails unless both parts are non-empty.
pub fn held_out(len: usize, count: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if count == 0 || count >= len {
        return Err(DataError::ValidationSize { count, train: len });
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut kept = order.split_off(count);
    order.sort_unstable();
    kept.sort_unstable();
    Ok((order, kept))
}

/// Loads the data set in `dir`, recognised by its file names: MNIST-style IDX files
/// (train-images-idx3-ubyte[.gz], …) or CIFAR-10 binary batches (data_batch_1.bin, …).
/// Pixels are scaled to [0, 1]; call [`DataSplit::normalize`] to subtract the mean.
pub fn load_dir(dir: &Path) -> Result<DataSplit, DataError> {
    Ok(DataFiles::open(dir)?.read_part(&PartPlan::whole())?.split)
}
