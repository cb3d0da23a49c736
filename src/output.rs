//! Files the program writes: models, checkpoints, JSON logs, reports, charts and benchmark
//! results. Whatever is at the path is never damaged:
//!
//! - the bytes go to a fresh temporary file, created exclusively (`O_CREAT | O_EXCL`, so a
//!   link planted at its name is never followed) under a unique hidden name in the target's
//!   folder, flushed to disk, then renamed over the target: a reader sees the old file or the
//!   new one, never a part;
//! - a symbolic link is resolved, and the file it points to is replaced in its own folder; the
//!   link stays a link;
//! - a target that is not a regular file (a folder, a device, a FIFO, a socket) is refused and
//!   never opened: opening a FIFO blocks, and renaming over a device node replaces it;
//! - a failed write (a full disk) removes its temporary file and leaves the target as it was.
//!
//! [`check`] says, before any work is done, whether a path can be written at all, so that a
//! run does not end with its model lost: [`check_writable`] also creates (and removes) the
//! temporary file a write would create, so that a folder the user cannot write into, or a
//! file system that refuses the name, is found then and not after training; and it returns
//! what the path names, so that two outputs naming one file can be refused ([`same_file`]).

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// At most this many symbolic links are followed from one path (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Temporary names tried before giving up (each is unique; a clash means someone planted one).
const TEMPORARY_ATTEMPTS: u32 = 64;

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("{path}: {kind}, not a regular file: refusing to write over it")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path}: {link} points to {kind}, not a regular file: refusing to write over it")]
    LinkToNotRegular { path: PathBuf, link: PathBuf, kind: &'static str },
    #[error("{path}: more than {MAX_LINKS} symbolic links to follow")]
    TooManyLinks { path: PathBuf },
    #[error("{path}: expected a file name, found none")]
    NoFileName { path: PathBuf },
    #[error("{path}: the folder {folder} does not exist")]
    MissingFolder { path: PathBuf, folder: PathBuf },
    #[error("{path}: {folder} is not a folder")]
    NotAFolder { path: PathBuf, folder: PathBuf },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.to_owned(), source }
}

/// What kind of file system object `metadata` describes, for messages.
fn kind(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
    }
    "a special file"
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Where a write to `path` lands: `path` itself, or the end of the chain of symbolic links
/// that starts there. The result is a regular file or nothing yet, in an existing folder;
/// anything else is an error naming `path`. Nothing is opened.
pub fn check(path: &Path) -> Result<PathBuf, OutputError> {
    let mut target = path.to_owned();
    for _ in 0..=MAX_LINKS {
        if target.file_name().is_none() {
            return Err(OutputError::NoFileName { path: path.to_owned() });
        }
        match std::fs::symlink_metadata(&target) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(io_error(path))?;
                target = folder_of(&target).join(link);
            }
            Ok(metadata) if metadata.is_file() => return Ok(target),
            Ok(metadata) if target == path => {
                return Err(OutputError::NotRegular { path: path.to_owned(), kind: kind(&metadata) })
            }
            Ok(metadata) => {
                return Err(OutputError::LinkToNotRegular {
                    path: path.to_owned(),
                    link: target,
                    kind: kind(&metadata),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let folder = folder_of(&target);
                return match std::fs::metadata(folder) {
                    Ok(m) if m.is_dir() => Ok(target),
                    Ok(_) => {
                        Err(OutputError::NotAFolder { path: path.to_owned(), folder: folder.to_owned() })
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Err(OutputError::MissingFolder { path: path.to_owned(), folder: folder.to_owned() })
                    }
                    Err(e) => Err(OutputError::Io { path: path.to_owned(), source: e }),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(OutputError::NotAFolder {
                    path: path.to_owned(),
                    folder: folder_of(&target).to_owned(),
                })
            }
            Err(e) => return Err(OutputError::Io { path: path.to_owned(), source: e }),
        }
    }
    Err(OutputError::TooManyLinks { path: path.to_owned() })
}

/// [`check`], then a try of what a write does first: the temporary file is created in the
/// target's folder and removed. Returns the file the path names, its folder resolved
/// (symbolic links and `..` included), for [`same_file`].
pub fn check_writable(path: &Path) -> Result<PathBuf, OutputError> {
    let target = check(path)?;
    let (temporary, file) = create_temporary(&target, unique_name).map_err(|e| match e {
        OutputError::Io { source, .. } => OutputError::Io { path: path.to_owned(), source },
        other => other,
    })?;
    drop(file);
    std::fs::remove_file(&temporary).map_err(io_error(path))?;
    let folder = std::fs::canonicalize(folder_of(&target)).map_err(io_error(path))?;
    Ok(folder.join(target.file_name().unwrap_or_default()))
}

/// The first two of `outputs` (an option or field with a [`check_writable`] result) that
/// name the same file.
pub fn same_file<T>(outputs: &[(T, PathBuf)]) -> Option<(&T, &T, &Path)> {
    outputs.iter().enumerate().find_map(|(i, (first, a))| {
        outputs[i + 1..].iter().find(|(_, b)| a == b).map(|(second, _)| (first, second, a.as_path()))
    })
}

/// Writes `bytes` to `path` as the module describes.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_with(path, |w| w.write_all(bytes))
}

/// Writes what `fill` writes to `path` as the module describes. When `fill` (or the disk)
/// fails, the temporary file is removed and the target is left as it was.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), OutputError> {
    let target = check(path)?;
    let (temporary, file) = create_temporary(&target, unique_name)?;
    let written = (|| {
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    let result = written.map_err(io_error(path)).and_then(|()| {
        // The target may have been replaced since it was checked: look again, just before.
        if check(&target)? != target {
            let changed = io::Error::other(format!("{} became a link while being written", target.display()));
            return Err(OutputError::Io { path: path.to_owned(), source: changed });
        }
        std::fs::rename(&temporary, &target).map_err(io_error(path))?;
        sync_folder(folder_of(&target));
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// The longest file name most file systems take (NAME_MAX on Linux, macOS and Windows).
const NAME_MAX: usize = 255;

/// A unique hidden name beside `target` for the `attempt`-th try, within [`NAME_MAX`] bytes:
/// the target's name is shortened (at a character boundary) where the suffix would not fit.
fn unique_name(target: &Path, attempt: u32) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let suffix = format!(".{}-{count}-{nanos:08x}-{attempt}.tmp", std::process::id());
    let stem = target.file_name().unwrap_or_default().to_string_lossy();
    let room = NAME_MAX - 1 - suffix.len();
    let mut end = stem.len().min(room);
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    OsString::from(format!(".{}{suffix}", &stem[..end]))
}

/// Creates a new file beside `target`, exclusively, under the first of `name`'s names that
/// is free; it takes the permissions of the file it will replace, if there is one.
fn create_temporary(
    target: &Path,
    name: impl Fn(&Path, u32) -> OsString,
) -> Result<(PathBuf, File), OutputError> {
    let folder = folder_of(target);
    for attempt in 0..TEMPORARY_ATTEMPTS {
        let temporary = folder.join(name(target, attempt));
        // create_new is O_CREAT | O_EXCL: it fails on anything already there, a link included.
        match OpenOptions::new().write(true).create_new(true).open(&temporary) {
            Ok(file) => {
                if let Ok(existing) = std::fs::metadata(target) {
                    let _ = file.set_permissions(existing.permissions());
                }
                return Ok((temporary, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // Named by the target: the temporary name is ours, not the user's.
            Err(e) => {
                let source =
                    io::Error::new(e.kind(), format!("cannot create a file in {}: {e}", folder.display()));
                return Err(OutputError::Io { path: target.to_owned(), source });
            }
        }
    }
    Err(OutputError::Io {
        path: target.to_owned(),
        source: io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name beside it"),
    })
}

/// Makes the rename itself durable where the platform allows (best effort: some file systems
/// refuse to sync a folder, and the data is already on disk).
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

/// A file of lines (JSON lines, a log) that grows one line at a time and is rewritten
/// atomically with each, so that it holds whole lines only, whenever the program stops.
#[derive(Debug)]
pub struct LineFile {
    path: PathBuf,
    text: String,
}

impl LineFile {
    /// A new, empty file at `path` (what is there is replaced at the first line).
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        check(path)?;
        Ok(Self { path: path.to_owned(), text: String::new() })
    }

    /// The file at `path`, to be continued: its lines are kept (none if it does not exist).
    pub fn append(path: &Path) -> Result<Self, OutputError> {
        let target = check(path)?;
        let mut text = match std::fs::read_to_string(&target) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(OutputError::Io { path: path.to_owned(), source: e }),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(Self { path: path.to_owned(), text })
    }

    /// Adds `line` (without its newline) and rewrites the file.
    pub fn push(&mut self, line: &str) -> Result<(), OutputError> {
        self.text.push_str(line);
        self.text.push('\n');
        write(&self.path, self.text.as_bytes())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_a_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (target, victim) = (dir.path().join("model"), dir.path().join("victim"));
        std::fs::write(&victim, "keep").unwrap();
        let planted = |_: &Path, attempt: u32| OsString::from(format!("t{attempt}"));
        std::os::unix::fs::symlink(&victim, dir.path().join("t0")).unwrap();
        let (temporary, mut file) = create_temporary(&target, planted).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(temporary, dir.path().join("t1"), "the planted name was not skipped");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
