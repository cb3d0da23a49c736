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
const LABELS_KIND: &str = "IDX labels, unsigned bytes, 1 dimension";

/// Rows and columns of an IDX image are at most this (a stated bound, so that sizes computed
/// from the header cannot overflow).
pub const MAX_SIDE: u32 = 1 << 16;

/// Reads an IDX image file: (count, rows, cols, pixels).
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let mut source = Source::open(path)?;
    let (count, rows, cols, pixels) = images_header(&mut source)?;
    let body = source.body("pixels", pixels)?;
    Ok((count as usize, rows as usize, cols as usize, body))
}

/// An image file's header, checked: (count, rows, cols, the pixels it promises).
fn images_header(source: &mut Source) -> Result<(u32, u32, u32, u64), DataError> {
    let path = source.path.clone();
    let path = path.as_path();
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
    Ok((count, rows, cols, pixels))
}

/// Reads an IDX label file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut source = Source::open(path)?;
    let h = source.header(2, LABELS_MAGIC, LABELS_KIND)?;
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

/// An IDX image file and its label file: a set whose samples can be read by position.
#[derive(Clone, Debug)]
pub(super) struct IdxPair {
    images: PathBuf,
    labels: PathBuf,
    count: usize,
    shape: Shape,
}

impl IdxPair {
    /// Finds `images` and `labels` (raw or .gz) in `dir` and checks their headers agree.
    pub(super) fn open(dir: &Path, images: &str, labels: &str) -> Result<Self, DataError> {
        let missing =
            |name: &str| DataError::MissingFile { path: dir.to_owned(), name: format!("{name}[.gz]") };
        let images = find(dir, images).ok_or_else(|| missing(images))?;
        let labels = find(dir, labels).ok_or_else(|| missing(labels))?;
        let (count, rows, cols, _) = images_header(&mut Source::open(&images)?)?;
        let label_count = Source::open(&labels)?.header(2, LABELS_MAGIC, LABELS_KIND)?[1];
        if label_count != count {
            return Err(DataError::CountMismatch {
                path: labels,
                images: count as usize,
                labels: label_count as usize,
            });
        }
        let shape = Shape::new(1, rows as usize, cols as usize);
        Ok(Self { images, labels, count: count as usize, shape })
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn shape(&self) -> Shape {
        self.shape
    }

    pub(super) fn paths(&self) -> Vec<PathBuf> {
        vec![self.images.clone(), self.labels.clone()]
    }

    /// Every sample, and the bytes read.
    pub(super) fn read_all(&self) -> Result<(Dataset, u64), DataError> {
        self.read(&(0..self.count).collect::<Vec<_>>())
    }

    /// The samples at `rows` (increasing, below the count), pixels scaled to [0, 1], and the
    /// bytes read from the files.
    pub(super) fn read(&self, rows: &[usize]) -> Result<(Dataset, u64), DataError> {
        let mut source = Source::open(&self.images)?;
        let (count, _, _, _) = images_header(&mut source)?;
        let d = self.shape.len();
        let mut scaled = Vec::with_capacity(rows.len() * d);
        source.records("pixels", count.into(), d, rows, |_, bytes| {
            scaled.extend(bytes.iter().map(|&p| p as f32 / 255.0));
            Ok(())
        })?;
        let mut read = source.file_bytes_read();
        let mut source = Source::open(&self.labels)?;
        let count = source.header(2, LABELS_MAGIC, LABELS_KIND)?[1];
        let mut labels = Vec::with_capacity(rows.len());
        let path = &self.labels;
        source.records("labels", count.into(), 1, rows, |row, byte| {
            if byte[0] as usize >= MNIST_CLASSES {
                return Err(DataError::LabelOutOfRange {
                    path: path.clone(),
                    index: row,
                    label: byte[0].into(),
                    classes: MNIST_CLASSES,
                });
            }
            labels.push(u32::from(byte[0]));
            Ok(())
        })?;
        read += source.file_bytes_read();
        Ok((Dataset::new(self.shape, MNIST_CLASSES, scaled, labels, &self.labels)?, read))
    }
}

/// The train-* and t10k-* IDX files (raw or .gz) in `dir`; the test images must have the
/// training images' shape.
pub(super) fn mnist_files(dir: &Path) -> Result<(IdxPair, IdxPair), DataError> {
    let train = IdxPair::open(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let test = IdxPair::open(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if test.shape != train.shape {
        return Err(DataError::ShapeMismatch {
            path: test.images,
            expected: train.shape.to_string(),
            found: test.shape.to_string(),
        });
    }
    Ok((train, test))
}

/// Loads train-* and t10k-* IDX files (raw or .gz) from `dir`, pixels scaled to [0, 1].
pub fn load_mnist_dir(dir: &Path) -> Result<DataSplit, DataError> {
    let (train, test) = mnist_files(dir)?;
    Ok(DataSplit { train: train.read_all()?.0, test: test.read_all()?.0, validation: None })
}
