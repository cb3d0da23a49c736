//! Optimisers: subsampled Gauss-Newton Newton-CG (with CG on the device, Armijo line search
//! and Levenberg-Marquardt damping), stochastic Gauss-Newton on mini-batches (SGN) and the SGD
//! baseline, reporting to an [`Observer`].

pub mod cg;
pub mod driver;
pub mod newton;
mod observer;
pub mod sgd;
pub mod sgn;
mod trial;

pub use driver::{drive, Run, Sets, Stepper, StopReason};
pub use observer::{EpochRecord, IterationRecord, Observer, Record};

/// Fails unless `data` may be augmented as `augment` says, by an optimiser whose mini-batches
/// are augmented on one process (`ranks` = 1).
pub(crate) fn check_augment(
    augment: crate::data::Augment,
    data: &crate::data::Dataset,
    ranks: usize,
) -> Result<(), crate::Error> {
    let refused =
        |expected: String| crate::Error::Setting { field: "augment", expected, found: augment.to_string() };
    if let Some(refusal) = augment.refusal(data) {
        return Err(refused(refusal));
    }
    if augment.is_on() && ranks > 1 {
        return Err(refused(format!("one process for SGD's augmented mini-batches (not {ranks} ranks yet)")));
    }
    Ok(())
}

/// Checks that `held` is rank `comm.rank()`'s [`crate::comm::shard`] of a training set of
/// `total` samples (the whole set for one process); returns its positions.
pub(crate) fn check_held(
    held: &crate::data::Dataset,
    total: usize,
    comm: &dyn crate::comm::Communicator,
) -> Result<std::ops::Range<usize>, crate::Error> {
    let range = crate::comm::shard(total, comm.rank(), comm.size());
    if held.len() != range.len() {
        return Err(crate::Error::VectorLength {
            label: format!("rank {}'s shard of the training set", comm.rank()),
            expected: range.len(),
            found: held.len(),
        });
    }
    Ok(range)
}

/// Where the next record of an epoch-based run falls: the first of the mini-batch positions
/// ⌈j·batches/k⌉, j = 1..=k, past `position` (k = `evals_per_epoch`, at most one record per
/// mini-batch), so that an epoch of `batches` mini-batches is recorded k times, evenly.
pub(crate) fn next_record_at(position: usize, batches: usize, evals_per_epoch: usize) -> usize {
    let k = evals_per_epoch.clamp(1, batches.max(1));
    (1..=k).map(|j| (j * batches).div_ceil(k)).find(|&at| at > position).unwrap_or(batches)
}

/// The steps an epoch-based run has taken after `epoch` epochs of `batches` mini-batches and
/// `batch_in_epoch` more: what a resumed state's step count must be (None past usize).
pub(crate) fn steps_at(epoch: usize, batches: usize, batch_in_epoch: usize) -> Option<usize> {
    epoch.checked_mul(batches)?.checked_add(batch_in_epoch)
}

/// What a state's step count was expected to be, for its error.
pub(crate) fn steps_expected(steps: &Option<usize>) -> String {
    let count = steps.map_or("more than a count holds".to_owned(), |s| s.to_string());
    format!("epochs × mini-batches per epoch + the place in the epoch, {count} (a checkpoint of other mini-batches?)")
}

#[cfg(test)]
mod tests {
    use super::next_record_at;

    #[test]
    fn records_fall_evenly_through_an_epoch() {
        let walk = |batches, k| {
            let mut at = vec![];
            let mut position = 0;
            while position < batches {
                position = next_record_at(position, batches, k);
                at.push(position);
            }
            at
        };
        assert_eq!(walk(63, 1), [63]);
        assert_eq!(walk(63, 4), [16, 32, 48, 63]);
        assert_eq!(walk(8, 4), [2, 4, 6, 8]);
        assert_eq!(walk(3, 4), [1, 2, 3]);
        assert_eq!(next_record_at(17, 63, 4), 32, "from inside a part");
    }
}
