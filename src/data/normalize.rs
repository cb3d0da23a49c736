use super::Dataset;
use crate::comm::{CommError, Communicator, SingleProcess};

/// What every set that meets the network has subtracted and divided out: the training set's
/// per-pixel mean (simpleNN's normalisation) and, when standardised, each channel's standard
/// deviation about that mean (torchvision's `Normalize`, as ResNets are trained).
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    /// Subtracted from each pixel position (\[c, h, w\]).
    pub mean: Vec<f32>,
    /// Each channel's standard deviation after the mean is subtracted (\[c\]), divided out;
    /// None leaves the scale as the data has it.
    pub std: Option<Vec<f32>>,
}

impl Normalizer {
    /// The mean of each pixel position over the samples (summed in f64).
    pub fn fit(data: &Dataset) -> Self {
        Self::fit_across(&SingleProcess, data, data.len()).expect("one process sums nothing")
    }

    /// [`Normalizer::fit`] over a set of `total` samples of which this rank holds `held`:
    /// each rank's f64 sums added over the ranks, the same on every rank. Collective.
    pub fn fit_across(comm: &dyn Communicator, held: &Dataset, total: usize) -> Result<Self, CommError> {
        let d = held.shape.len();
        let mut sum = vec![0.0f64; d];
        for sample in held.images.chunks_exact(d) {
            for (s, &v) in sum.iter_mut().zip(sample) {
                *s += v as f64;
            }
        }
        comm.sum_f64(&mut sum)?;
        let n = total.max(1) as f64;
        Ok(Self { mean: sum.into_iter().map(|s| (s / n) as f32).collect(), std: None })
    }

    /// The per-pixel mean and each channel's standard deviation about it, over every sample
    /// and position of the channel (summed in f64). A channel that is constant over the
    /// training set has nothing to scale: its deviation is taken as 1.
    pub fn fit_standard(data: &Dataset) -> Self {
        Self::fit_standard_across(&SingleProcess, data, data.len()).expect("one process sums nothing")
    }

    /// [`Normalizer::fit_standard`] over a set of `total` samples of which this rank holds
    /// `held`: the mean as [`Normalizer::fit_across`] sums it, then each rank's sums of
    /// squares about it added over the ranks. Collective.
    pub fn fit_standard_across(
        comm: &dyn Communicator,
        held: &Dataset,
        total: usize,
    ) -> Result<Self, CommError> {
        let Self { mean, .. } = Self::fit_across(comm, held, total)?;
        let plane = held.shape.height * held.shape.width;
        let mut squares = vec![0.0f64; held.shape.channels];
        for sample in held.images.chunks_exact(mean.len()) {
            for ((square, values), means) in
                squares.iter_mut().zip(sample.chunks_exact(plane)).zip(mean.chunks_exact(plane))
            {
                *square +=
                    values.iter().zip(means).map(|(&v, &m)| (v as f64 - m as f64).powi(2)).sum::<f64>();
            }
        }
        comm.sum_f64(&mut squares)?;
        let count = (total * plane).max(1) as f64;
        let std = squares
            .into_iter()
            .map(|square| match (square / count).sqrt() as f32 {
                std if std > 0.0 && std.is_finite() => std,
                _ => 1.0,
            })
            .collect();
        Ok(Self { mean, std: Some(std) })
    }

    /// Subtracts the mean from every sample of `data`, and divides by each channel's
    /// deviation when standardised.
    pub fn apply(&self, data: &mut Dataset) {
        assert_eq!(self.mean.len(), data.shape.len(), "normalizer fitted to another shape");
        let plane = data.shape.height * data.shape.width;
        for sample in data.images.chunks_exact_mut(self.mean.len()) {
            for (c, (values, means)) in
                sample.chunks_exact_mut(plane).zip(self.mean.chunks_exact(plane)).enumerate()
            {
                let std = self.std.as_ref().map_or(1.0, |std| std[c]);
                for (v, m) in values.iter_mut().zip(means) {
                    *v = (*v - m) / std;
                }
            }
        }
    }

    /// Whether it divides by the channels' deviations.
    pub fn is_standard(&self) -> bool {
        self.std.is_some()
    }
}
