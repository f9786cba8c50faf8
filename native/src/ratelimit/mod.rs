//! Token buckets shared by every worker process of one host.
//!
//! The buckets live in one shared memory mapping (a memfd the supervisor creates and every
//! worker maps), so a limit of N requests holds for the host, whatever worker a connection lands
//! on. The table is open-addressed: a bucket is found by a 64-bit hash of its identity, probing
//! a short window of slots. Each slot has a tiny lock word holding the owner's process id; an
//! update takes it for a few dozen nanoseconds, and a lock left by a process that died is taken
//! over, so a killed worker never wedges a limit.
//!
//! A bucket follows the semantics of agentgateway's local rate limit: it starts full with
//! `max_tokens`, gains `tokens_per_fill` each whole `fill_interval` after its creation (never
//! beyond `max_tokens`), and a request costing `n` tokens passes only if `n` are available.

mod table;

pub use table::{BucketSpec, Decision, MapError, SharedBuckets, hash_key, monotonic_ns};
