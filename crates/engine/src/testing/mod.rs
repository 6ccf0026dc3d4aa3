//! Test support (feature `fault-injection`): file systems that record what a workload does
//! and fail what a test plans, both built on one wrapper of the real file system.
//!
//! - [`watch`]: [`watch::Watched`], the real file system with a [`watch::Watcher`] told about
//!   every operation that can change it, before and after.
//! - [`fault`]: [`fault::FaultFs`] fails operation *k* with EIO, ENOSPC, a short write or a panic.
//! - [`crash`]: [`crash::RecordingFs`] records a trace, and [`crash::crash_states`] builds every
//!   state a crash may leave at each point of it.

pub mod crash;
pub mod fault;
pub mod watch;
