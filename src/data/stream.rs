//! Data files read as streams, raw or gzipped: a header is read and checked before anything
//! else, and a body is read to the length the header promises and no further (an error at the
//! first byte beyond), so that memory follows what the header promises, never what a
//! compressed stream would expand to. A header that promises more than the machine's memory
//! is refused before anything is allocated.
//!
//! A load may keep only some records ([`Source::records`]): an uncompressed file is read
//! exactly where they are (seeking over the rest, so that a rank reads its shard and nothing
//! else); a gzipped one is decompressed up to the last of them, the rest discarded as it
//! streams. Every source counts the bytes it reads from its file.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

/// A file that counts the bytes read from it.
struct Counted {
    file: File,
    read: Rc<Cell<u64>>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

enum Reader {
    /// An uncompressed file, read exactly as asked: first `pending` (the bytes read to tell
    /// it from gzip), then the file, seeking over what is skipped.
    Raw { pending: Vec<u8>, file: Counted },
    /// A gzipped file decompressed on the fly, or any file read by lines.
    Stream(Box<dyn BufRead>),
}

/// A data file opened for reading, decompressed on the fly when it is gzipped.
pub(super) struct Source {
    pub(super) path: PathBuf,
    reader: Reader,
    /// The file's size when it is not compressed (then a body's size is checked up front).
    raw_len: Option<u64>,
    /// Bytes of the data read or skipped so far (after decompression).
    position: u64,
    /// Bytes read from the file itself.
    file_read: Rc<Cell<u64>>,
}

impl Source {
    pub(super) fn open(path: &Path) -> Result<Self, DataError> {
        let io = |source| DataError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let file_read = Rc::new(Cell::new(0));
        let mut file = Counted { file, read: file_read.clone() };
        let mut pending = Vec::with_capacity(2);
        (&mut file).take(2).read_to_end(&mut pending).map_err(io)?;
        let (reader, raw_len) = if pending == [0x1f, 0x8b] {
            let compressed = BufReader::new(std::io::Cursor::new(pending).chain(file));
            let decoder = flate2::bufread::MultiGzDecoder::new(compressed);
            (Reader::Stream(Box::new(BufReader::new(decoder))), None)
        } else {
            (Reader::Raw { pending, file }, Some(len))
        };
        Ok(Self { path: path.to_owned(), reader, raw_len, position: 0, file_read })
    }

    /// The file's size when it is not compressed.
    pub(super) fn raw_len(&self) -> Option<u64> {
        self.raw_len
    }

    /// Bytes read from the file so far (compressed bytes for a gzipped file).
    pub(super) fn file_bytes_read(&self) -> u64 {
        self.file_read.get()
    }

    fn io(&self, source: std::io::Error) -> DataError {
        DataError::Io { path: self.path.clone(), source }
    }

    /// Reads into `buf` as far as the data goes; returns how much it filled.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut filled = 0;
        while filled < buf.len() {
            let read = match &mut self.reader {
                Reader::Raw { pending, .. } if !pending.is_empty() => {
                    let n = pending.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&pending[..n]);
                    pending.drain(..n);
                    Ok(n)
                }
                Reader::Raw { file, .. } => file.read(&mut buf[filled..]),
                Reader::Stream(reader) => reader.read(&mut buf[filled..]),
            };
            match read {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.position += filled as u64;
        Ok(filled)
    }

    /// Passes over the next `len` bytes of the data: a seek in an uncompressed file, read and
    /// dropped in a gzipped one. An error names `field` when the data ends first.
    fn skip(&mut self, field: &'static str, len: u64) -> Result<(), DataError> {
        let expected = self.position + len;
        let skipped = match &mut self.reader {
            Reader::Raw { pending, file } => {
                let from_pending = (pending.len() as u64).min(len);
                pending.drain(..from_pending as usize);
                let rest = len - from_pending;
                if rest > 0 {
                    let offset = i64::try_from(rest).map_err(|_| std::io::ErrorKind::InvalidInput.into());
                    offset.and_then(|o| file.file.seek(SeekFrom::Current(o))).map_err(|e| self.io(e))?;
                }
                // The file's length says whether the bytes were there.
                let end = self.raw_len.unwrap_or(u64::MAX);
                len.min(end.saturating_sub(self.position))
            }
            Reader::Stream(reader) => {
                std::io::copy(&mut reader.take(len), &mut std::io::sink()).map_err(|e| self.io(e))?
            }
        };
        self.position += skipped;
        if skipped < len {
            return Err(DataError::Truncated {
                path: self.path.clone(),
                field,
                expected,
                found: self.position,
            });
        }
        Ok(())
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

    /// Where the file's size is known (uncompressed), refuses a file that does not end at
    /// byte `end`, the end of the body `field` its header promises.
    fn check_ends_at(&self, field: &'static str, end: u64) -> Result<(), DataError> {
        match self.raw_len {
            Some(raw) if raw < end => {
                Err(DataError::Truncated { path: self.path.clone(), field, expected: end, found: raw })
            }
            Some(raw) if raw > end => {
                Err(DataError::TrailingBytes { path: self.path.clone(), field, expected: end })
            }
            _ => Ok(()),
        }
    }

    /// The next `len` bytes, which must be the rest of the file: an error when the file ends
    /// before them or goes on after them (read no further than one byte beyond).
    pub(super) fn body(&mut self, field: &'static str, len: u64) -> Result<Vec<u8>, DataError> {
        self.check_promise(field, len, BYTES_PER_PIXEL)?;
        let expected = self.position + len;
        self.check_ends_at(field, expected)?;
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

    /// Calls `each(row, bytes)` for the records at `rows` (increasing, below `count`) of a
    /// body of `count` records of `record` bytes that starts here and must be the rest of the
    /// file. An uncompressed file is checked against that promise first and read only where
    /// the rows are; a gzipped one is read up to its last row, and checked for bytes beyond
    /// the promise only when that row is the body's last.
    pub(super) fn records(
        &mut self,
        field: &'static str,
        count: u64,
        record: usize,
        rows: &[usize],
        mut each: impl FnMut(usize, &[u8]) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows increase");
        let record_bytes = record as u64;
        self.check_promise(field, rows.len() as u64 * record_bytes, BYTES_PER_PIXEL)?;
        let body_end = count.checked_mul(record_bytes).and_then(|b| b.checked_add(self.position));
        let Some(body_end) = body_end else {
            return Err(DataError::TooLarge {
                path: self.path.clone(),
                field,
                bytes: u64::MAX,
                available: 0,
            });
        };
        self.check_ends_at(field, body_end)?;
        if let Some(&last) = rows.last() {
            assert!((last as u64) < count, "rows lie in the body");
        }
        // Runs of consecutive rows, read a few MiB at a time.
        const STEP: usize = 1 << 22;
        let per_read = (STEP / record.max(1)).max(1);
        let mut buf = Vec::new();
        // The record the data stands at.
        let mut at = 0usize;
        let mut i = 0;
        while i < rows.len() {
            let start = rows[i];
            let mut end = start + 1;
            while i + (end - start) < rows.len() && rows[i + (end - start)] == end && end - start < per_read {
                end += 1;
            }
            self.skip(field, (start - at) as u64 * record_bytes)?;
            buf.resize((end - start) * record, 0);
            let got = self.fill(&mut buf)?;
            if got < buf.len() {
                return Err(DataError::Truncated {
                    path: self.path.clone(),
                    field,
                    expected: body_end,
                    found: self.position,
                });
            }
            for (row, bytes) in (start..end).zip(buf.chunks_exact(record)) {
                each(row, bytes)?;
            }
            at = end;
            i += end - start;
        }
        if self.raw_len.is_none() && at as u64 == count && self.fill(&mut [0u8])? != 0 {
            return Err(DataError::TrailingBytes { path: self.path.clone(), field, expected: body_end });
        }
        Ok(())
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
        // Lines need a buffer: an uncompressed file reads on through one.
        if let Reader::Raw { .. } = self.reader {
            if let Reader::Raw { pending, file } =
                std::mem::replace(&mut self.reader, Reader::Stream(Box::new(std::io::empty())))
            {
                let rest = std::io::Cursor::new(pending).chain(file);
                self.reader = Reader::Stream(Box::new(BufReader::new(rest)));
            }
        }
        let Reader::Stream(lines) = &mut self.reader else { unreachable!("made a stream above") };
        let mut bytes = Vec::new();
        let read = lines
            .take(max as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| DataError::Io { path: self.path.clone(), source: e })?;
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
