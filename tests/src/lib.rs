//! Fixtures for kyso's cross-crate tests: real processes, real ports, real disks.

pub mod nats;
pub mod publish;
pub mod seed;
pub mod workload;
