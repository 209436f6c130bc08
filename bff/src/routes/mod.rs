//! One module per route family.

pub mod auth_proxy;
pub mod bff;
pub mod health;
pub mod integrations;
pub mod knowledge;
pub mod metrics;
pub mod rest;
pub mod slack;
pub mod storage_api;
