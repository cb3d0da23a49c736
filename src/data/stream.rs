//! Data files read as streams, raw or gzipped: a header is read and checked before anything
//! else, and a body is read to the length the header promises and no further (an error at the
//! first byte beyond), so that memory follows what the header promises, never what a
//! compressed stream would expand to. A header that promises more than the machine's memory
//! is refused before anything is allocated.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::DataError;

/// Bytes of memory a load may use for each byte of pixels it promises: the bytes themselves
/// and their f32 values.
pub(super) const BYTES_PER_PIXEL: u64 = 1 + 4;

/// The memory this load may use: the machine's available memory where the system says
/// (Linux's /proc/meminfo), else no bound.
pub(super) fn memory_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(u64::MAX)
}

/// A data file opened for reading, decompressed on the fly when it is gzipped.
pub(super) struct Source {
    pub(super) path: PathBuf,
    reader: Box<dyn BufRead>,
    /// The file's size when it is not compressed (then a body's size is checked up front).
    raw_len: Option<u64>,
    /// Bytes read so far.
    position: u64,
}

impl Source {
    pub(super) fn open(path: &Path) -> Result<Self, DataError> {
        let io = |source| DataError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut buffered = BufReader::new(file);
        let gzipped = buffered.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let (reader, raw_len): (Box<dyn BufRead>, _) = if gzipped {
            (Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(buffered))), None)
        } else {
            (Box::new(buffered), Some(len))
        };
        Ok(Self { path: path.to_owned(), reader, raw_len, position: 0 })
    }

    fn io(&self, source: std::io::Error) -> DataError {
        DataError::Io { path: self.path.clone(), source }
    }

    /// Reads into `buf` as far as the data goes; returns how much it filled.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.position += filled as u64;
        Ok(filled)
    }

    /// `words` big-endian u32 of a header whose first is `magic`.
    pub(super) fn header(
        &mut self,
        words: usize,
        magic: u32,
        what: &'static str,
    ) -> Result<Vec<u32>, DataError> {
        let mut bytes = vec![0u8; 4 * words];
        let got = self.fill(&mut bytes)?;
        let word = |i: usize| {
            u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
        };
        // The magic number first: a file of the wrong kind is reported as such, even when short.
        if got >= 4 && word(0) != magic {
            return Err(DataError::BadMagic {
                path: self.path.clone(),
                expected: magic,
                found: word(0),
                what,
            });
        }
        if got < bytes.len() {
            return Err(DataError::Truncated {
                path: self.path.clone(),
                field: "header",
                expected: bytes.len() as u64,
                found: got as u64,
            });
        }
        Ok((0..words).map(word).collect())
    }

    /// Refuses a promise of `bytes` (of which a load keeps `factor` times as much in memory)
    /// beyond the machine's memory.
    pub(super) fn check_promise(
        &self,
        field: &'static str,
        bytes: u64,
        factor: u64,
    ) -> Result<(), DataError> {
        let available = memory_available();
        match bytes.checked_mul(factor) {
            Some(needed) if needed <= available => Ok(()),
            _ => Err(DataError::TooLarge { path: self.path.clone(), field, bytes, available }),
        }
    }

    /// The next `len` bytes, which must be the rest of the file: an error when the file ends
    /// before them or goes on after them (read no further than one byte beyond).
    pub(super) fn body(&mut self, field: &'static str, len: u64) -> Result<Vec<u8>, DataError> {
        self.check_promise(field, len, BYTES_PER_PIXEL)?;
        let expected = self.position + len;
        match self.raw_len {
            Some(raw) if raw < expected => {
                return Err(DataError::Truncated { path: self.path.clone(), field, expected, found: raw })
            }
            Some(raw) if raw > expected => {
                return Err(DataError::TrailingBytes { path: self.path.clone(), field, expected })
            }
            _ => {}
        }
        // Grown as the data comes, so that a short stream with a large promise allocates only
        // what it holds.
        const STEP: u64 = 1 << 20;
        let mut bytes = Vec::with_capacity(len.min(STEP) as usize);
        while (bytes.len() as u64) < len {
            let start = bytes.len();
            let step = (len - start as u64).min(STEP) as usize;
            bytes.resize(start + step, 0);
            let got = self.fill(&mut bytes[start..])?;
            if got < step {
                return Err(DataError::Truncated {
                    path: self.path.clone(),
                    field,
                    expected,
                    found: self.position,
                });
            }
        }
        if self.fill(&mut [0u8])? != 0 {
            return Err(DataError::TrailingBytes { path: self.path.clone(), field, expected });
        }
        Ok(bytes)
    }

    /// The next record of `buf.len()` bytes: false at the end of the data; an error when the
    /// data ends inside a record.
    pub(super) fn record(&mut self, field: &'static str, buf: &mut [u8]) -> Result<bool, DataError> {
        let got = self.fill(buf)?;
        if got == 0 {
            return Ok(false);
        }
        if got < buf.len() {
            let expected = self.position - got as u64 + buf.len() as u64;
            return Err(DataError::Truncated {
                path: self.path.clone(),
                field,
                expected,
                found: self.position,
            });
        }
        Ok(true)
    }

    /// The next line (without its end), at most `max` bytes: None at the end of the data.
    pub(super) fn line(&mut self, max: usize, number: usize) -> Result<Option<String>, DataError> {
        let mut bytes = Vec::new();
        let read =
            (&mut self.reader).take(max as u64 + 1).read_until(b'\n', &mut bytes).map_err(|e| self.io(e))?;
        self.position += read as u64;
        if read == 0 {
            return Ok(None);
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        } else if bytes.len() > max {
            return Err(DataError::Libsvm {
                path: self.path.clone(),
                line: number,
                message: format!("longer than {max} bytes"),
            });
        }
        String::from_utf8(bytes).map(Some).map_err(|e| DataError::Libsvm {
            path: self.path.clone(),
            line: number,
            message: format!("not UTF-8 text ({e})"),
        })
    }
}
