//! The tuner's cache file: one JSON file per adapter, build and set of shaders, named by a hash
//! of them, holding the winners by key and a checksum of them. A file that cannot be read,
//! does not parse, was made for something else, names an unknown kernel or fails its checksum
//! is not trusted: the caller warns and tunes again, and the next write replaces it. Writes go
//! through [`crate::output::write`] (a temporary file renamed into place).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gpu::Gpu;

/// The cache file's format; a file of another is a miss.
const FORMAT: u32 = 1;

/// The winner of one key: the kernel's name, its microseconds, and every candidate's
/// microseconds (None: dropped after its first run, more than [`super::DROP_BEHIND`] times
/// behind the leader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub kernel: String,
    pub us: f64,
    pub candidates: BTreeMap<String, Option<f64>>,
}

/// What a cache file is for: the adapter, the crate's version and a hash of every shader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct AdapterKey {
    name: String,
    vendor: u32,
    device: u32,
    driver: String,
    driver_info: String,
    backend: String,
    device_type: String,
    crate_version: String,
    shaders: String,
}

impl AdapterKey {
    pub(super) fn of(gpu: &Gpu) -> Self {
        let a = gpu.adapter();
        Self {
            name: a.name.clone(),
            vendor: a.vendor,
            device: a.device,
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            backend: format!("{:?}", a.backend),
            device_type: format!("{:?}", a.device_type),
            crate_version: env!("CARGO_PKG_VERSION").to_owned(),
            shaders: crate::kernels::sources_fingerprint(),
        }
    }

    pub(super) fn is_software(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }

    /// `tune-<hash of the key>.json`.
    pub(super) fn file_name(&self) -> String {
        let text = serde_json::to_string(self).expect("a key serialises");
        format!("tune-{:016x}.json", fnv1a(text.as_bytes()))
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    adapter: AdapterKey,
    choices: BTreeMap<String, Choice>,
    /// FNV-1a of `choices` as compact JSON.
    checksum: String,
}

/// The folder of the cache: `NEWTON_WGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/newton-wgpu`, else
/// `$HOME/.cache/newton-wgpu`; None where none is set (the choices then stay in memory).
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("NEWTON_WGPU_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|dir| dir.join("newton-wgpu")))
        .or_else(|| var("HOME").map(|home| home.join(".cache").join("newton-wgpu")))
}

/// The choices in `path`, made for `adapter`; no file is an empty cache. Anything else that is
/// wrong is an Err with the warning to give.
pub(super) fn read(path: &Path, adapter: &AdapterKey) -> Result<BTreeMap<String, Choice>, String> {
    let distrust = |why: String| format!("the tuning cache {} {why}; tuning again", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(distrust(format!("cannot be read ({e})"))),
    };
    let file: CacheFile =
        serde_json::from_str(&text).map_err(|e| distrust(format!("is not a cache of this program ({e})")))?;
    if file.format != FORMAT {
        return Err(distrust(format!("has format {}, this program writes {FORMAT}", file.format)));
    }
    if &file.adapter != adapter {
        return Err(distrust("was made for another adapter, driver, version or set of shaders".into()));
    }
    if file.checksum != checksum(&file.choices) {
        return Err(distrust("does not match its checksum (it was changed by hand or damaged)".into()));
    }
    for (key, choice) in &file.choices {
        if !(super::is_candidate(key, &choice.kernel) && choice.us.is_finite() && choice.us > 0.0) {
            return Err(distrust(format!("holds a choice that is not a kernel and its time for {key:?}")));
        }
    }
    Ok(file.choices)
}

/// Writes `choices` for `adapter` to `path`, creating its folder; Err is the warning to give.
pub(super) fn write(
    path: &Path,
    adapter: &AdapterKey,
    choices: &BTreeMap<String, Choice>,
) -> Result<(), String> {
    let fail =
        |e: &dyn std::fmt::Display| format!("the tuning cache {} was not written: {e}", path.display());
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(|e| fail(&e))?;
    }
    let file = CacheFile {
        format: FORMAT,
        adapter: adapter.clone(),
        checksum: checksum(choices),
        choices: choices.clone(),
    };
    let text = serde_json::to_string_pretty(&file).expect("a cache serialises");
    crate::output::write(path, text.as_bytes()).map_err(|e| fail(&e))
}

fn checksum(choices: &BTreeMap<String, Choice>) -> String {
    let text = serde_json::to_string(choices).expect("choices serialise");
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// FNV-1a, 64 bits: a stable hash for names and checksums (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_changes_with_any_choice() {
        let mut choices = BTreeMap::new();
        let choice = Choice { kernel: "windowed".into(), us: 10.0, candidates: BTreeMap::new() };
        choices.insert("conv forward".to_owned(), choice.clone());
        let before = checksum(&choices);
        choices.insert("conv forward".to_owned(), Choice { kernel: "tiled".into(), ..choice.clone() });
        assert_ne!(before, checksum(&choices));
        choices.insert("conv forward".to_owned(), Choice { us: 11.0, ..choice });
        assert_ne!(before, checksum(&choices));
    }
}
