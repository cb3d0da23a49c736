use super::Dataset;

/// The per-pixel mean of a training set, subtracted from every set that meets the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    pub mean: Vec<f32>,
}

impl Normalizer {
    /// The mean of each pixel position over the samples (summed in f64).
    pub fn fit(data: &Dataset) -> Self {
        let d = data.shape.len();
        let mut sum = vec![0.0f64; d];
        for sample in data.images.chunks_exact(d) {
            for (s, &v) in sum.iter_mut().zip(sample) {
                *s += v as f64;
            }
        }
        let n = data.len().max(1) as f64;
        Self { mean: sum.into_iter().map(|s| (s / n) as f32).collect() }
    }

    /// Subtracts the mean from every sample of `data`.
    pub fn apply(&self, data: &mut Dataset) {
        assert_eq!(self.mean.len(), data.shape.len(), "normalizer fitted to another shape");
        for sample in data.images.chunks_exact_mut(self.mean.len()) {
            for (v, m) in sample.iter_mut().zip(&self.mean) {
                *v -= m;
            }
        }
    }
}
