//! LIBSVM's sparse text format with dense image features: one sample a line,
//! `label index:value index:value …`, indices 1-based and increasing; absent features are 0.

use std::path::Path;

use super::stream::{memory_available, Source};
use super::{DataError, Dataset};
use crate::nn::Shape;

/// What the file itself does not say.
#[derive(Clone, Copy, Debug)]
pub struct LibsvmOptions {
    /// The shape of one sample; features are laid out in (c, h, w) order.
    pub shape: Shape,
    /// Labels must be integers in 0..classes.
    pub classes: usize,
    /// Feature values are divided by this, to bring pixels into [0, 1] (255 for raw grey levels).
    pub max_value: f32,
}

/// Reads a LIBSVM file (raw or gzipped).
pub fn read_libsvm(path: &Path, options: &LibsvmOptions) -> Result<Dataset, DataError> {
    read_samples(path, options, None)
}

/// Rank `rank` of `ranks`'s shard ([`crate::comm::shard`]) of a LIBSVM file's samples, and the
/// file's number of samples. The file has no header: a first pass counts its samples (lines
/// with a label) without parsing them; the second parses the shard's lines alone and stops
/// after its last, so memory follows the shard, not the file.
pub fn read_libsvm_part(
    path: &Path,
    options: &LibsvmOptions,
    rank: usize,
    ranks: usize,
) -> Result<(Dataset, usize), DataError> {
    let dim = options.shape.checked_len().unwrap_or(usize::MAX);
    let max_line = dim.saturating_mul(64).saturating_add(64);
    let mut source = Source::open(path)?;
    let (mut total, mut line_no) = (0, 0);
    while let Some(line) = source.line(max_line, line_no + 1)? {
        line_no += 1;
        total += usize::from(!line.trim().is_empty());
    }
    let shard = crate::comm::shard(total, rank, ranks);
    Ok((read_samples(path, options, Some(shard))?, total))
}

/// The samples of a LIBSVM file, or those at positions `wanted` (the others' lines are passed
/// over unparsed, and nothing is read after the last wanted one).
fn read_samples(
    path: &Path,
    options: &LibsvmOptions,
    wanted: Option<std::ops::Range<usize>>,
) -> Result<Dataset, DataError> {
    let mut source = Source::open(path)?;
    let dim = options.shape.checked_len().ok_or(DataError::FieldTooLarge {
        path: path.to_owned(),
        field: "the sample shape",
        value: u64::MAX,
        max: usize::MAX as u64,
    })?;
    // A line holds at most dim features of a few dozen characters each.
    let max_line = dim.saturating_mul(64).saturating_add(64);
    let most = memory_available() / (4 * dim.max(1) as u64);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let (mut line_no, mut position) = (0, 0);
    // Errors name a sample by its position in the file.
    let first = wanted.as_ref().map_or(0, |w| w.start);
    while let Some(line) = source.line(max_line, line_no + 1)? {
        line_no += 1;
        if let Some(wanted) = &wanted {
            if line.trim().is_empty() {
                continue;
            }
            position += 1;
            if position <= wanted.start {
                continue;
            }
            if position > wanted.end {
                break;
            }
        }
        if labels.len() as u64 >= most {
            let bytes = 4 * dim as u64 * (labels.len() as u64 + 1);
            return Err(DataError::TooLarge {
                path: path.to_owned(),
                field: "samples",
                bytes,
                available: memory_available(),
            });
        }
        let line = line.as_str();
        let fail = |message: String| DataError::Libsvm { path: path.to_owned(), line: line_no, message };
        let mut fields = line.split_whitespace();
        let Some(label_text) = fields.next() else { continue };
        let label: f64 =
            label_text.parse().map_err(|_| fail(format!("label {label_text:?} is not a number")))?;
        if label.fract() != 0.0 || label < 0.0 || label >= options.classes as f64 {
            return Err(DataError::LabelOutOfRange {
                path: path.to_owned(),
                index: first + labels.len(),
                label: label as i64,
                classes: options.classes,
            });
        }
        let mut sample = vec![0.0f32; dim];
        let mut previous = 0usize;
        for field in fields {
            let (index_text, value_text) =
                field.split_once(':').ok_or_else(|| fail(format!("feature {field:?} is not index:value")))?;
            let index: usize = index_text
                .parse()
                .map_err(|_| fail(format!("feature index {index_text:?} is not a positive integer")))?;
            if index == 0 || index > dim {
                return Err(fail(format!(
                    "feature index {index} is outside 1..={dim} (the shape {})",
                    options.shape
                )));
            }
            if index <= previous {
                return Err(fail(format!("feature index {index} does not increase (after {previous})")));
            }
            previous = index;
            let value: f32 = value_text
                .parse()
                .map_err(|_| fail(format!("feature value {value_text:?} is not a number")))?;
            if !value.is_finite() {
                return Err(DataError::NotFinite { path: path.to_owned(), index: first + labels.len() });
            }
            sample[index - 1] = value / options.max_value;
        }
        images.extend(sample);
        labels.push(label as u32);
    }
    Dataset::new(options.shape, options.classes, images, labels, path)
}
