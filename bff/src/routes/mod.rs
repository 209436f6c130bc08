//! One module per route family.

pub mod health;
pub mod knowledge;
pub mod metrics;
pub mod rest;
pub mod storage_api;
