//! Data augmentation (`--augment crop,flip`): a random crop of each image after zero padding
//! of [`CROP_PADDING`] on every side (of the normalised image, so the padding is the mean
//! image), and a random horizontal flip. Each sample's draw is a function of the run's seed,
//! the draw's number (a Newton iteration, an SGD or SGN step) and the sample's index in the
//! training set alone, so a draw repeats exactly whatever the batch order, and a resumed run
//! draws what an uninterrupted one does.

use serde::{Deserialize, Serialize};

use super::Dataset;

/// Zero padding on each side before a crop: the CIFAR ResNets' 4.
pub const CROP_PADDING: usize = 4;

/// Which augmentations a run applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    pub crop: bool,
    pub flip: bool,
}

/// One sample's draw: its crop offsets (0 ..= 2·padding) and whether it is flipped.
struct Draw {
    dy: usize,
    dx: usize,
    flip: bool,
}

/// SplitMix64's finaliser: a well-mixed 64-bit value of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Augment {
    /// No augmentation.
    pub const NONE: Self = Self { crop: false, flip: false };

    pub fn is_on(&self) -> bool {
        self.crop || self.flip
    }

    /// Why `data` cannot be augmented so, if it cannot: a flip needs classes that a mirror
    /// image keeps ([`Dataset::mirror_invariant`]: CIFAR-10's, not digits'), a crop images of
    /// more than one pixel.
    pub fn refusal(&self, data: &Dataset) -> Option<String> {
        if self.flip && !data.mirror_invariant {
            return Some(
                "a horizontal flip changes what these samples show (digits, or data not known to be \
                 mirror-invariant, as CIFAR-10 is): use --augment crop alone, or none"
                    .into(),
            );
        }
        if self.crop && (data.shape.height < 2 || data.shape.width < 2) {
            return Some(format!("a crop needs images, not samples of {}", data.shape));
        }
        None
    }

    fn draw(&self, seed: u64, draw: u64, index: usize) -> Draw {
        let bits = mix(mix(seed ^ 0x6175_676d_656e_7421).wrapping_add(draw) ^ mix(index as u64));
        let span = 2 * CROP_PADDING as u64 + 1;
        let crop = |shift: u32| if self.crop { ((bits >> shift) % span) as usize } else { CROP_PADDING };
        Draw { dy: crop(8), dx: crop(24), flip: self.flip && bits & 1 == 1 }
    }

    /// Writes sample `index` of `data` as draw `draw` makes it into `out`; the sample is at
    /// position `first + index` of the training set (`data` may be one rank's part of it).
    fn sample_into(&self, data: &Dataset, first: usize, index: usize, seed: u64, draw: u64, out: &mut [f32]) {
        let s = data.shape;
        let image = data.images_of(index..index + 1);
        let Draw { dy, dx, flip } = self.draw(seed, draw, first + index);
        for c in 0..s.channels {
            for y in 0..s.height {
                // Row y of the crop is row y + dy − padding of the image (zero outside it).
                let from_y = (y + dy).checked_sub(CROP_PADDING).filter(|&r| r < s.height);
                for x in 0..s.width {
                    let at = if flip { s.width - 1 - x } else { x };
                    let from_x = (at + dx).checked_sub(CROP_PADDING).filter(|&r| r < s.width);
                    out[(c * s.height + y) * s.width + x] = match (from_y, from_x) {
                        (Some(r), Some(q)) => image[(c * s.height + r) * s.width + q],
                        _ => 0.0,
                    };
                }
            }
        }
    }

    /// The images of the samples at `indices` of `data` (in that order), as draw `draw` of the
    /// run seeded `seed` makes them, appended to `images`. `data` holds the training set's
    /// samples from position `first` on (0 for the whole set).
    pub fn extend_images(
        &self,
        data: &Dataset,
        first: usize,
        indices: &[usize],
        seed: u64,
        draw: u64,
        images: &mut Vec<f32>,
    ) {
        let len = data.shape.len();
        for &index in indices {
            let start = images.len();
            images.resize(start + len, 0.0);
            self.sample_into(data, first, index, seed, draw, &mut images[start..]);
        }
    }

    /// The samples at `indices` of `data` (in that order), each as draw `draw` of the run
    /// seeded `seed` makes it.
    pub fn select(&self, data: &Dataset, indices: &[usize], seed: u64, draw: u64) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * data.shape.len());
        self.extend_images(data, 0, indices, seed, draw, &mut images);
        Dataset { images, labels: indices.iter().map(|&i| data.labels[i]).collect(), ..data.select(&[]) }
    }

    /// Every sample of `data`, as draw `draw` makes it; `data` holds the training set's
    /// samples from position `first` on (a rank's shard), each drawn as in the whole set.
    pub fn apply(&self, data: &Dataset, first: usize, seed: u64, draw: u64) -> Dataset {
        let mut images = Vec::with_capacity(data.images.len());
        self.extend_images(data, first, &(0..data.len()).collect::<Vec<_>>(), seed, draw, &mut images);
        Dataset { images, ..data.clone() }
    }
}

/// One draw of a run's augmentation: which samples' images a mini-batch's members become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentDraw {
    pub augment: Augment,
    /// The run's seed.
    pub seed: u64,
    /// The draw's number: the step.
    pub draw: u64,
}

/// The images of the samples at `indices` of `data`, in that order, as `draw` makes them
/// (as they are with none).
pub fn gather_images(data: &Dataset, indices: &[usize], draw: Option<AugmentDraw>) -> Vec<f32> {
    gather_images_at(data, 0, indices, draw)
}

/// [`gather_images`] from a part of the training set: `data` holds its samples from position
/// `first` on, and each is drawn as at its position in the whole set.
pub fn gather_images_at(
    data: &Dataset,
    first: usize,
    indices: &[usize],
    draw: Option<AugmentDraw>,
) -> Vec<f32> {
    let mut images = Vec::with_capacity(indices.len() * data.shape.len());
    match draw {
        Some(d) => d.augment.extend_images(data, first, indices, d.seed, d.draw, &mut images),
        None => indices.iter().for_each(|&i| images.extend_from_slice(data.images_of(i..i + 1))),
    }
    images
}

impl std::str::FromStr for Augment {
    type Err = String;

    /// `crop`, `flip`, `crop,flip` (in any order), or `none`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut augment = Self::NONE;
        if text.trim() == "none" {
            return Ok(augment);
        }
        for part in text.split(',').map(str::trim) {
            match part {
                "crop" => augment.crop = true,
                "flip" => augment.flip = true,
                other => return Err(format!("{other:?}: expected crop, flip, crop,flip or none")),
            }
        }
        Ok(augment)
    }
}

impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.crop, self.flip) {
            (true, true) => f.write_str("crop,flip"),
            (true, false) => f.write_str("crop"),
            (false, true) => f.write_str("flip"),
            (false, false) => f.write_str("none"),
        }
    }
}
