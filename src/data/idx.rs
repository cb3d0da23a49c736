//! MNIST's IDX format (also Fashion-MNIST's): big-endian header, then unsigned bytes.
//! Images: magic 0x00000803, count, rows, cols, pixels row by row.
//! Labels: magic 0x00000801, count, one byte each. Files may be gzipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::stream::Source;
use super::{DataError, DataSplit, Dataset};
use crate::nn::Shape;
use crate::output;

pub const MNIST_CLASSES: usize = 10;
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Rows and columns of an IDX image are at most this (a stated bound, so that sizes computed
/// from the header cannot overflow).
pub const MAX_SIDE: u32 = 1 << 16;

/// Reads an IDX image file: (count, rows, cols, pixels).
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let mut source = Source::open(path)?;
    let h = source.header(4, IMAGES_MAGIC, "IDX images, unsigned bytes, 3 dimensions")?;
    let (count, rows, cols) = (h[1], h[2], h[3]);
    if rows == 0 || cols == 0 {
        return Err(DataError::BadField {
            path: path.to_owned(),
            field: "rows, cols",
            expected: "at least 1 each".into(),
            found: format!("{rows}, {cols}"),
        });
    }
    for (value, field) in [(rows, "rows"), (cols, "cols")] {
        if value > MAX_SIDE {
            return Err(DataError::FieldTooLarge {
                path: path.to_owned(),
                field,
                value: value.into(),
                max: MAX_SIDE.into(),
            });
        }
    }
    // At most 2^32 · 2^16 · 2^16 = 2^64: checked all the same.
    let pixels =
        u64::from(count).checked_mul(u64::from(rows) * u64::from(cols)).ok_or(DataError::TooLarge {
            path: path.to_owned(),
            field: "pixels",
            bytes: u64::MAX,
            available: 0,
        })?;
    let body = source.body("pixels", pixels)?;
    Ok((count as usize, rows as usize, cols as usize, body))
}

/// Reads an IDX label file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut source = Source::open(path)?;
    let h = source.header(2, LABELS_MAGIC, "IDX labels, unsigned bytes, 1 dimension")?;
    source.body("labels", u64::from(h[1]))
}

fn write_file(path: &Path, bytes: &[u8], gzip: bool) -> Result<(), DataError> {
    Ok(output::write_with(path, |file| {
        if gzip {
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            encoder.write_all(bytes)?;
            encoder.finish().map(|_| ())
        } else {
            file.write_all(bytes)
        }
    })?)
}

/// Writes images in IDX format (gzipped when `gzip`).
pub fn write_idx_images(
    path: &Path,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    gzip: bool,
) -> Result<(), DataError> {
    let count = pixels.len() / (rows * cols);
    let mut bytes = Vec::with_capacity(16 + pixels.len());
    for word in [IMAGES_MAGIC, count as u32, rows as u32, cols as u32] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    write_file(path, &bytes, gzip)
}

/// Writes labels in IDX format (gzipped when `gzip`).
pub fn write_idx_labels(path: &Path, labels: &[u8], gzip: bool) -> Result<(), DataError> {
    let mut bytes = Vec::with_capacity(8 + labels.len());
    for word in [LABELS_MAGIC, labels.len() as u32] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(labels);
    write_file(path, &bytes, gzip)
}

/// `dir/name.gz` if it exists, else `dir/name`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_owned()].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

pub(super) fn has_mnist_files(dir: &Path) -> bool {
    find(dir, "train-images-idx3-ubyte").is_some()
}

fn load_pair(dir: &Path, images: &str, labels: &str) -> Result<Dataset, DataError> {
    let missing = |name: &str| DataError::MissingFile { path: dir.to_owned(), name: format!("{name}[.gz]") };
    let images_path = find(dir, images).ok_or_else(|| missing(images))?;
    let labels_path = find(dir, labels).ok_or_else(|| missing(labels))?;
    let (count, rows, cols, pixels) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != count {
        return Err(DataError::CountMismatch { path: labels_path, images: count, labels: labels.len() });
    }
    let scaled = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let labels = labels.into_iter().map(u32::from).collect();
    Dataset::new(Shape::new(1, rows, cols), MNIST_CLASSES, scaled, labels, &labels_path)
}

/// Loads train-* and t10k-* IDX files (raw or .gz) from `dir`, pixels scaled to [0, 1].
pub fn load_mnist_dir(dir: &Path) -> Result<DataSplit, DataError> {
    let train = load_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let test = load_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if test.shape != train.shape {
        return Err(DataError::ShapeMismatch {
            path: dir.join("t10k-images-idx3-ubyte"),
            expected: train.shape.to_string(),
            found: test.shape.to_string(),
        });
    }
    Ok(DataSplit { train, test, validation: None })
}
