//! The body bytes every request holds at once, under one ceiling (`[limits]
//! max_body_bytes_in_flight`, 503 + `Retry-After` past it). A body takes its bytes as they
//! arrive (never from `Content-Length`) and gives them back when nothing holds it any more: its
//! request answered, and the store done with its event (a request answered 503 at its deadline
//! leaves its event queued for sled's committer, body and all: a stalled fsync with senders
//! retrying held 8,192 queued bodies, up to 8 GiB, outside the ceiling).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The ceiling and what is held under it, shared by the public listener's requests.
#[derive(Debug)]
pub struct BodyBudget {
    held: AtomicUsize,
    max: AtomicUsize,
}

impl BodyBudget {
    pub fn new(max: usize) -> BodyBudget {
        BodyBudget {
            held: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        }
    }

    /// A new ceiling (a reload): bodies already held keep their bytes.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// A lease of nothing yet, to grow as bytes arrive.
    pub fn lease(self: &Arc<Self>) -> BodyLease {
        BodyLease {
            budget: self.clone(),
            held: 0,
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Body bytes one request holds; returned to the budget when dropped.
#[derive(Debug)]
pub struct BodyLease {
    budget: Arc<BodyBudget>,
    held: usize,
}

impl BodyLease {
    pub fn held(&self) -> usize {
        self.held
    }

    /// Takes `bytes` more, or nothing if that would pass the ceiling.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let budget = &self.budget;
        let max = budget.max.load(Ordering::Relaxed);
        let taken = budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= max)
            })
            .is_ok();
        if taken {
            self.held += bytes;
        }
        taken
    }
}

impl Drop for BodyLease {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_budget_is_shared_and_given_back() {
        let budget = Arc::new(BodyBudget::new(100));
        let mut first = budget.lease();
        let mut second = budget.lease();
        assert!(first.grow(60));
        assert!(!second.grow(41), "over the ceiling");
        assert!(second.grow(40));
        assert_eq!(budget.held(), 100);
        drop(first);
        assert_eq!(budget.held(), 40);
        assert!(second.grow(60));
    }
}
