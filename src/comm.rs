//! The ranks of a data-parallel job and what they share. Rank r of P owns a contiguous shard of
//! the training set ([`shard`]); sums over samples are each rank's partial sums added up by
//! [`Communicator::sum_f32`] / [`Communicator::sum_f64`]. Every rank receives the same sum, bit
//! for bit (the parts are added in rank order, once), so that a decision taken from it is the
//! same decision everywhere: one rank deciding otherwise would leave the others waiting for it.
//!
//! [`SingleProcess`] is the one-rank job: every operation returns at once and costs nothing.
//! [`ThreadGroup`] runs P ranks as threads of one process, for tests of the data-parallel
//! arithmetic; it is not a way to use several machines. `over_mpi::Mpi` (cargo feature
//! `mpi`) is: the ranks that `mpirun` starts, on one machine or many.

use std::borrow::Cow;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use thiserror::Error;

use crate::data::Dataset;

#[cfg(feature = "mpi")]
pub mod over_mpi;

#[derive(Debug, Error)]
pub enum CommError {
    #[error("rank {rank} of {size}: {what}")]
    Failed { rank: usize, size: usize, what: String },
}

/// The operations a data-parallel job needs, collective: every rank calls each of them, in the
/// same order, with the same lengths.
pub trait Communicator {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Replaces `values` by their element-wise sum over the ranks, the same on every rank.
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), CommError>;
    /// Replaces `values` by their element-wise sum over the ranks, the same on every rank.
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), CommError>;
    /// Replaces `bytes` on every rank by rank 0's.
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CommError>;
}

/// The samples rank `rank` of `size` owns among `len`: a contiguous range, the first `len % size`
/// ranks holding one more, so that the shards in rank order are the samples in order.
pub fn shard(len: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / size, len % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Sums a device vector over the ranks in place: read back (waiting for the work that writes
/// it), summed, written back (the write lands before the next submit). Returns the seconds of
/// the exchange itself, from when the values are on the host.
pub fn sum_on_device(
    gpu: &crate::gpu::Gpu,
    comm: &dyn Communicator,
    buffer: &crate::gpu::GpuBuffer<f32>,
) -> Result<f64, crate::error::Error> {
    let mut values = gpu.read(buffer)?;
    let exchange = std::time::Instant::now();
    comm.sum_f32(&mut values)?;
    gpu.write(buffer, &values)?;
    Ok(exchange.elapsed().as_secs_f64())
}

/// Values in one sum of [`gather_part`]: 4 MiB of f32.
const GATHER_VALUES: usize = 1 << 20;

/// Rank `comm.rank()`'s part by position ([`shard`] of `members.len()`) of the samples at
/// positions `members` of a training set of `total` samples, of which this rank holds its
/// [`shard`] in `held`: their images (as `draw` makes them) and labels, in `members`' order.
///
/// Each rank writes the members it holds into rows of zeros and the rows are summed over the
/// ranks, a few MiB at a time, so every value arrives exactly (one value plus zeros) and the
/// part is what one process holding the whole set would take: the subsample's and SGN's
/// mini-batch's parts keep their sizes whichever ranks hold their members. Collective: every
/// rank calls it with the same `members`. One process gathers from `held`, exchanging nothing.
pub fn gather_part(
    comm: &dyn Communicator,
    held: &Dataset,
    total: usize,
    members: &[usize],
    draw: Option<crate::data::AugmentDraw>,
) -> Result<(Vec<f32>, Vec<u32>), crate::error::Error> {
    let range = shard(total, comm.rank(), comm.size());
    if held.len() != range.len() || members.iter().any(|&i| i >= total) {
        return Err(crate::error::Error::Setting {
            field: "held samples",
            expected: format!(
                "rank {}'s shard of {total} samples ({} of them) and members below {total}",
                comm.rank(),
                range.len()
            ),
            found: format!("{} samples", held.len()),
        });
    }
    let part = shard(members.len(), comm.rank(), comm.size());
    if comm.size() == 1 {
        let labels = members.iter().map(|&i| held.labels[i]).collect();
        return Ok((crate::data::gather_images(held, members, draw), labels));
    }
    // A row: the image, then the label as f32 (exact below 2^24).
    let d = held.shape.len();
    let row = d + 1;
    let rows_per_sum = (GATHER_VALUES / row).max(1);
    let (mut images, mut labels) = (Vec::with_capacity(part.len() * d), Vec::with_capacity(part.len()));
    let mut rows = Vec::new();
    for (chunk, positions) in members.chunks(rows_per_sum).enumerate() {
        let first = chunk * rows_per_sum;
        rows.clear();
        rows.resize(positions.len() * row, 0.0f32);
        // The members this rank holds: their slots, and their indices in `held`.
        let (slots, locals): (Vec<usize>, Vec<usize>) = positions
            .iter()
            .enumerate()
            .filter(|(_, member)| range.contains(member))
            .map(|(slot, &member)| (slot, member - range.start))
            .unzip();
        let mine = crate::data::gather_images_at(held, range.start, &locals, draw);
        for ((&slot, &local), image) in slots.iter().zip(&locals).zip(mine.chunks_exact(d.max(1))) {
            let out = &mut rows[slot * row..(slot + 1) * row];
            out[..d].copy_from_slice(image);
            out[d] = held.labels[local] as f32;
        }
        comm.sum_f32(&mut rows)?;
        for (slot, values) in rows.chunks_exact(row).enumerate() {
            if part.contains(&(first + slot)) {
                images.extend_from_slice(&values[..d]);
                labels.push(values[d] as u32);
            }
        }
    }
    Ok((images, labels))
}

/// The samples of `data` that rank `comm.rank()` holds: its [`shard`], copied; all of them,
/// borrowed, for one rank.
pub fn shard_of<'d>(data: &'d Dataset, comm: &dyn Communicator) -> Cow<'d, Dataset> {
    if comm.size() == 1 {
        return Cow::Borrowed(data);
    }
    let range = shard(data.len(), comm.rank(), comm.size());
    Cow::Owned(data.select(&range.collect::<Vec<_>>()))
}

/// Facts that must be the same on every rank (the version, the settings, the data's sizes,
/// the network), each a name and a value as text, in the same order on every rank.
pub type Facts<'a> = [(&'a str, String)];

/// Checks that every rank started with rank 0's `facts`: rank 0's are sent to all, each rank
/// compares its own, and which ranks differ in which facts is summed so that every rank knows.
/// Ranks that differ would otherwise run different loops and wait for each other forever.
/// Returns None when all agree; else, on every rank, what differs: a rank that differs says
/// how (its values and rank 0's), the others say which ranks differ and in what. One
/// collective broadcast and one sum; at most 52 facts.
pub fn disagreement(comm: &dyn Communicator, facts: &Facts) -> Result<Option<String>, CommError> {
    const ANOTHER_LIST: usize = 52;
    assert!(facts.len() <= ANOTHER_LIST, "the facts' mask is one f64's mantissa");
    if comm.size() == 1 {
        return Ok(None);
    }
    let mine: Vec<(String, String)> =
        facts.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
    let mut bytes =
        if comm.rank() == 0 { serde_json::to_vec(&mine).expect("strings serialise") } else { Vec::new() };
    comm.broadcast(&mut bytes)?;
    // An unreadable list from rank 0 is a list that differs.
    let rank0: Vec<(String, String)> = serde_json::from_slice(&bytes).unwrap_or_default();
    let names: Vec<&str> = rank0.iter().map(|(name, _)| name.as_str()).collect();
    let mut mask: u64 = 0;
    let mut how = Vec::new();
    if names != mine.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>() {
        mask |= 1 << ANOTHER_LIST;
        how.push("another list of facts (another version of the program?)".to_owned());
    } else {
        for (i, ((name, theirs), (_, ours))) in rank0.iter().zip(&mine).enumerate() {
            if theirs != ours {
                mask |= 1 << i;
                how.push(format!("{name}: {} here, {} on rank 0", shortened(ours), shortened(theirs)));
            }
        }
    }
    let mut masks = vec![0.0f64; comm.size()];
    masks[comm.rank()] = mask as f64;
    comm.sum_f64(&mut masks)?;
    let differing: Vec<(usize, u64)> =
        masks.iter().enumerate().filter(|(_, &m)| m != 0.0).map(|(rank, &m)| (rank, m as u64)).collect();
    if differing.is_empty() {
        return Ok(None);
    }
    if mask != 0 {
        return Ok(Some(format!(
            "this rank was started differently from rank 0, so the ranks cannot run one job: {}",
            how.join("; ")
        )));
    }
    let all = differing.iter().fold(0u64, |all, (_, m)| all | m);
    let mut what: Vec<&str> = (0..names.len()).filter(|i| all & (1 << i) != 0).map(|i| names[i]).collect();
    if all & (1 << ANOTHER_LIST) != 0 {
        what.push("the list of facts itself");
    }
    let ranks: Vec<String> = differing.iter().map(|(rank, _)| rank.to_string()).collect();
    Ok(Some(format!(
        "rank{} {} of {} started differently from rank 0 (in {}), so the ranks cannot run one job; \
         each says how",
        if ranks.len() == 1 { "" } else { "s" },
        ranks.join(", "),
        comm.size(),
        what.join(", ")
    )))
}

/// `value`, cut to 160 characters for a message.
fn shortened(value: &str) -> String {
    const MOST: usize = 160;
    match value.char_indices().nth(MOST) {
        Some((at, _)) => format!("{:?}…", &value[..at]),
        None => format!("{value:?}"),
    }
}

/// A job of one rank.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn sum_f32(&self, _: &mut [f32]) -> Result<(), CommError> {
        Ok(())
    }

    fn sum_f64(&self, _: &mut [f64]) -> Result<(), CommError> {
        Ok(())
    }

    fn broadcast(&self, _: &mut Vec<u8>) -> Result<(), CommError> {
        Ok(())
    }
}

/// One round of an all-gather among the threads of a [`ThreadGroup`].
struct Round {
    /// Rounds completed.
    generation: u64,
    /// This round's contributions, by rank.
    deposits: Vec<Option<Vec<u8>>>,
    /// The last completed round's contributions, by rank.
    published: Arc<Vec<Vec<u8>>>,
}

struct Shared {
    round: Mutex<Round>,
    done: Condvar,
}

/// A rank of a job whose P ranks are threads of this process ([`ThreadGroup::new`] makes all
/// P; move each into its thread). A rank that waits longer than `timeout` for the others fails
/// instead of hanging the test.
pub struct ThreadGroup {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl ThreadGroup {
    /// The `size` ranks of one job.
    pub fn new(size: usize, timeout: Duration) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                generation: 0,
                deposits: vec![None; size],
                published: Arc::new(Vec::new()),
            }),
            done: Condvar::new(),
        });
        (0..size).map(|rank| ThreadGroup { rank, size, shared: shared.clone(), timeout }).collect()
    }

    fn failed(&self, what: impl Into<String>) -> CommError {
        CommError::Failed { rank: self.rank, size: self.size, what: what.into() }
    }

    /// Every rank's `mine`, by rank. The round's last rank publishes them; a rank cannot start
    /// the next round before every rank has deposited into it, so what it reads is its own
    /// round's.
    fn all_gather(&self, mine: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>, CommError> {
        let poisoned = "another rank panicked during a collective operation";
        let mut round = self.shared.round.lock().map_err(|_| self.failed(poisoned))?;
        let generation = round.generation;
        round.deposits[self.rank] = Some(mine);
        if round.deposits.iter().all(Option::is_some) {
            let parts = round.deposits.iter_mut().map(|d| d.take().expect("all deposited")).collect();
            round.published = Arc::new(parts);
            round.generation += 1;
            self.shared.done.notify_all();
            return Ok(round.published.clone());
        }
        let (round, wait) = self
            .shared
            .done
            .wait_timeout_while(round, self.timeout, |r| r.generation == generation)
            .map_err(|_| self.failed(poisoned))?;
        if wait.timed_out() {
            return Err(self.failed(format!("the other ranks did not arrive within {:?}", self.timeout)));
        }
        Ok(round.published.clone())
    }
}

impl ThreadGroup {
    /// Every rank's `values` added in rank order into `values`.
    fn sum<T: bytemuck::Pod + std::ops::AddAssign + Default>(
        &self,
        values: &mut [T],
    ) -> Result<(), CommError> {
        let parts = self.all_gather(bytemuck::cast_slice(values).to_vec())?;
        if parts.iter().any(|p| p.len() != std::mem::size_of_val(values)) {
            return Err(self.failed("the ranks summed vectors of different lengths"));
        }
        values.fill(T::default());
        for part in parts.iter() {
            for (sum, value) in values.iter_mut().zip(bytemuck::pod_collect_to_vec::<u8, T>(part)) {
                *sum += value;
            }
        }
        Ok(())
    }
}

impl Communicator for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<(), CommError> {
        self.sum(values)
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<(), CommError> {
        self.sum(values)
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CommError> {
        let parts = self.all_gather(std::mem::take(bytes))?;
        *bytes = parts[0].clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_samples_in_order_with_sizes_that_differ_by_at_most_one() {
        for len in [0, 1, 7, 100, 101] {
            for size in 1..=5 {
                let shards: Vec<_> = (0..size).map(|r| shard(len, r, size)).collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[size - 1].end, len);
                assert!(shards.windows(2).all(|w| w[0].end == w[1].start));
                let (lo, hi) = (shards.iter().map(|s| s.len()).min(), shards.iter().map(|s| s.len()).max());
                assert!(hi.unwrap() - lo.unwrap() <= 1, "{len} over {size}: {shards:?}");
            }
        }
    }

    #[test]
    fn every_rank_of_a_thread_group_receives_the_same_sums_and_rank_zeros_bytes() {
        let ranks = ThreadGroup::new(3, Duration::from_secs(10));
        let results: Vec<(Vec<f32>, Vec<f64>, Vec<u8>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|comm| {
                    scope.spawn(move || {
                        let r = comm.rank();
                        let mut a: Vec<f32> = (0..5).map(|i| 0.1 * (i + r) as f32).collect();
                        let mut b = vec![r as f64, 1e16, -1e16];
                        let mut bytes = vec![r as u8; r + 1];
                        for _ in 0..3 {
                            // Rounds in a row: a fast rank must not read an old round.
                            comm.sum_f32(&mut a).unwrap();
                        }
                        comm.sum_f64(&mut b).unwrap();
                        comm.broadcast(&mut bytes).unwrap();
                        (a, b, bytes)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut want: Vec<f32> = (0..5).map(|i| (0..3).map(|r| 0.1 * (i + r) as f32).sum()).collect();
        for _ in 0..2 {
            want = want.iter().map(|v| v + v + v).collect();
        }
        for (a, b, bytes) in &results {
            assert_eq!(a, &results[0].0, "every rank holds the same bits");
            for (got, want) in a.iter().zip(&want) {
                assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
            }
            assert_eq!(b, &vec![3.0, 3e16, -3e16]);
            assert_eq!(bytes, &vec![0u8]);
        }
    }

    #[test]
    fn ranks_that_start_differently_are_told_apart_and_every_rank_says_so() {
        let ranks = ThreadGroup::new(3, Duration::from_secs(10));
        let messages: Vec<Option<String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|comm| {
                    scope.spawn(move || {
                        let batch = if comm.rank() == 2 { "50" } else { "100" };
                        let facts = [("version", "1.0".to_owned()), ("settings", format!("--batch {batch}"))];
                        let agreed = disagreement(comm, &facts[..1]).unwrap();
                        assert_eq!(agreed, None, "rank {}: the version is the same", comm.rank());
                        disagreement(comm, &facts).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let differs = messages[2].as_deref().unwrap();
        assert!(differs.contains(r#"settings: "--batch 50" here, "--batch 100" on rank 0"#), "{differs}");
        for agreeing in &messages[..2] {
            let agreeing = agreeing.as_deref().unwrap();
            assert!(
                agreeing.contains("rank 2 of 3 started differently") && agreeing.contains("(in settings)")
            );
        }
        assert_eq!(disagreement(&SingleProcess, &[("anything", "at all".into())]).unwrap(), None);
    }

    #[test]
    fn a_rank_left_alone_fails_instead_of_hanging() {
        let ranks = ThreadGroup::new(2, Duration::from_millis(50));
        let error = ranks[0].sum_f64(&mut [1.0]).unwrap_err();
        assert!(error.to_string().contains("rank 0 of 2"), "{error}");
    }
}
