//! Commands that look after the knowledge files outside of serving requests.

pub mod backfill;
pub mod reconcile;
