//! The shared table of token buckets: layout, locking, probing and the bucket arithmetic.

use std::cmp::Reverse;
use std::fmt;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const MAGIC: u64 = 0x6167_7752_4c31_0002; // "agwRL1" + layout version 2 (slots name their rule)
/// Slots probed for one key; a key lives in the first free or matching slot of its window.
const WINDOW: usize = 16;
/// Times a full window is searched again when the slot chosen to give up changed meanwhile.
const EVICT_ATTEMPTS: usize = 4;
/// Spins before the lock waiter starts yielding the CPU (a holder keeps it for nanoseconds).
const SPINS: u32 = 64;
/// Yields between two checks of whether the lock holder is still alive.
const LIVENESS_EVERY: u32 = 256;

/// What a bucket holds and how it refills. Identical specs share nothing by themselves: the
/// bucket is chosen by its key; the spec travels with every call so a slot can be (re)made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpec {
    pub max_tokens: u64,
    pub tokens_per_fill: u64,
    pub fill_interval_ns: u64,
    /// The rule (policy) the bucket belongs to, as a hash; every key of one rule shares it.
    /// When a window is full, a new key gives up a bucket of its own rule before another's
    /// (see `SharedBuckets::bucket`). 0 for specs made without one.
    pub rule: u64,
}

impl BucketSpec {
    /// A spec the table can serve: a positive interval, a fill no larger than the bucket.
    pub fn new(
        max_tokens: u64,
        tokens_per_fill: u64,
        fill_interval_ns: u64,
    ) -> Result<Self, String> {
        if fill_interval_ns == 0 {
            return Err("fillInterval must be positive".into());
        }
        if tokens_per_fill > max_tokens {
            return Err("tokensPerFill cannot exceed maxTokens".into());
        }
        Ok(BucketSpec {
            max_tokens,
            tokens_per_fill,
            fill_interval_ns,
            rule: 0,
        })
    }

    /// The same spec for the buckets of `rule`.
    pub fn with_rule(self, rule: u64) -> Self {
        BucketSpec { rule, ..self }
    }
}

/// The outcome of one acquisition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Tokens left in the bucket after this call.
    pub remaining: u64,
    /// Nanoseconds until the bucket next gains tokens.
    pub reset_ns: u64,
}

#[derive(Debug)]
pub enum MapError {
    Os(std::io::Error),
    NotATable,
    TooSmall,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Os(e) => write!(f, "cannot map the shared rate-limit table: {e}"),
            MapError::NotATable => f.write_str("the file is not a rate-limit table"),
            MapError::TooSmall => f.write_str("a rate-limit table needs at least one slot"),
        }
    }
}

impl std::error::Error for MapError {}

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    slots: AtomicU64,
    evictions: AtomicU64,
}

/// One bucket. Every field but `lock` and `key` is read and written only under the lock; `key`
/// is also read without it, as a hint, and re-checked once the lock is held.
#[repr(C, align(64))]
struct Slot {
    lock: AtomicU32,
    key: AtomicU64,
    origin_ns: AtomicU64,
    tokens: AtomicU64,
    /// Whole fill intervals since `origin_ns` already credited.
    credited: AtomicU64,
    last_used_ns: AtomicU64,
    max_tokens: AtomicU64,
    tokens_per_fill: AtomicU64,
    fill_interval_ns: AtomicU64,
    rule: AtomicU64,
}

struct Guard<'a> {
    slot: &'a Slot,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.slot.lock.store(0, Ordering::Release);
    }
}

/// A mapped table. Cheap to share: every method takes `&self`.
pub struct SharedBuckets {
    base: *mut u8,
    len: usize,
    slots: usize,
    pid: u32,
}

// The mapping is plain memory accessed only through atomics.
unsafe impl Send for SharedBuckets {}
unsafe impl Sync for SharedBuckets {}

impl Drop for SharedBuckets {
    fn drop(&mut self) {
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

fn table_len(slots: usize) -> usize {
    size_of::<Header>() + slots * size_of::<Slot>()
}

fn os_error() -> MapError {
    MapError::Os(std::io::Error::last_os_error())
}

fn map(fd: libc::c_int, len: usize, flags: libc::c_int) -> Result<*mut u8, MapError> {
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(os_error())
    } else {
        Ok(ptr.cast())
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The table key of a bucket: its identity (policy, route, spec) and the per-request key value.
/// Never 0, which marks a free slot.
pub fn hash_key(identity: &[u8], key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in identity.iter().chain(std::iter::once(&0xffu8)).chain(key) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finish with a mixer so that nearby inputs land in unrelated slots.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    if h == 0 { 1 } else { h }
}

fn process_alive(pid: u32) -> bool {
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl SharedBuckets {
    fn from_mapping(base: *mut u8, len: usize, slots: usize) -> Self {
        SharedBuckets {
            base,
            len,
            slots,
            pid: std::process::id().max(1),
        }
    }

    fn init_header(&self) {
        let header = self.header();
        header.slots.store(self.slots as u64, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
    }

    /// A table private to this process (and to children it forks): for tests and for a worker
    /// run without a supervisor.
    pub fn anonymous(slots: usize) -> Result<Self, MapError> {
        if slots == 0 {
            return Err(MapError::TooSmall);
        }
        let len = table_len(slots);
        let base = map(-1, len, libc::MAP_SHARED | libc::MAP_ANONYMOUS)?;
        let table = Self::from_mapping(base, len, slots);
        table.init_header();
        Ok(table)
    }

    /// Size the (empty) file `fd` for `slots` buckets and map it: done once, by the supervisor.
    pub fn initialize(fd: i32, slots: usize) -> Result<Self, MapError> {
        if slots == 0 {
            return Err(MapError::TooSmall);
        }
        let len = table_len(slots);
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            return Err(os_error());
        }
        let base = map(fd, len, libc::MAP_SHARED)?;
        let table = Self::from_mapping(base, len, slots);
        table.init_header();
        Ok(table)
    }

    /// Map a table another process initialized.
    pub fn attach(fd: i32) -> Result<Self, MapError> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(os_error());
        }
        let len = st.st_size as usize;
        if len < table_len(1) {
            return Err(MapError::NotATable);
        }
        let base = map(fd, len, libc::MAP_SHARED)?;
        let mut table = Self::from_mapping(base, len, 0);
        let header = table.header();
        let slots = header.slots.load(Ordering::Relaxed) as usize;
        if header.magic.load(Ordering::Acquire) != MAGIC || slots == 0 || table_len(slots) > len {
            return Err(MapError::NotATable); // dropping `table` unmaps
        }
        table.slots = slots;
        Ok(table)
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Buckets dropped while still in use because their probe window was full.
    pub fn evictions(&self) -> u64 {
        self.header().evictions.load(Ordering::Relaxed)
    }

    fn header(&self) -> &Header {
        unsafe { &*(self.base as *const Header) }
    }

    fn slot(&self, index: usize) -> &Slot {
        debug_assert!(index < self.slots);
        unsafe { &*(self.base.add(size_of::<Header>()) as *const Slot).add(index) }
    }

    fn lock<'a>(&self, slot: &'a Slot) -> Guard<'a> {
        let mut waits: u32 = 0;
        loop {
            match slot
                .lock
                .compare_exchange_weak(0, self.pid, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Guard { slot },
                Err(owner) => {
                    waits = waits.wrapping_add(1);
                    if waits < SPINS {
                        spin_loop();
                        continue;
                    }
                    if waits.is_multiple_of(LIVENESS_EVERY)
                        && owner != 0
                        && owner != self.pid
                        && !process_alive(owner)
                        && slot
                            .lock
                            .compare_exchange(owner, self.pid, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        // The holder died mid-update; its slot is taken over as it is.
                        return Guard { slot };
                    }
                    std::thread::yield_now();
                }
            }
        }
    }

    fn reset(slot: &Slot, key: u64, spec: &BucketSpec, now: u64) {
        slot.key.store(key, Ordering::Relaxed);
        slot.origin_ns.store(now, Ordering::Relaxed);
        slot.tokens.store(spec.max_tokens, Ordering::Relaxed);
        slot.credited.store(0, Ordering::Relaxed);
        slot.last_used_ns.store(now, Ordering::Relaxed);
        slot.max_tokens.store(spec.max_tokens, Ordering::Relaxed);
        slot.tokens_per_fill
            .store(spec.tokens_per_fill, Ordering::Relaxed);
        slot.fill_interval_ns
            .store(spec.fill_interval_ns, Ordering::Relaxed);
        slot.rule.store(spec.rule, Ordering::Relaxed);
    }

    fn has_spec(slot: &Slot, spec: &BucketSpec) -> bool {
        slot.max_tokens.load(Ordering::Relaxed) == spec.max_tokens
            && slot.tokens_per_fill.load(Ordering::Relaxed) == spec.tokens_per_fill
            && slot.fill_interval_ns.load(Ordering::Relaxed) == spec.fill_interval_ns
    }

    /// Credit the fill intervals elapsed since the last credit; returns the tokens now held.
    fn refill(slot: &Slot, now: u64) -> u64 {
        let interval = slot.fill_interval_ns.load(Ordering::Relaxed).max(1);
        let origin = slot.origin_ns.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(origin) / interval;
        let credited = slot.credited.load(Ordering::Relaxed);
        let mut tokens = slot.tokens.load(Ordering::Relaxed);
        if elapsed > credited {
            let max = slot.max_tokens.load(Ordering::Relaxed);
            let added =
                (elapsed - credited).saturating_mul(slot.tokens_per_fill.load(Ordering::Relaxed));
            tokens = tokens.saturating_add(added).min(max);
            slot.tokens.store(tokens, Ordering::Relaxed);
            slot.credited.store(elapsed, Ordering::Relaxed);
        }
        tokens
    }

    fn reset_ns(slot: &Slot, now: u64) -> u64 {
        let interval = slot.fill_interval_ns.load(Ordering::Relaxed).max(1);
        let next = slot
            .origin_ns
            .load(Ordering::Relaxed)
            .saturating_add((slot.credited.load(Ordering::Relaxed) + 1).saturating_mul(interval));
        next.saturating_sub(now)
    }

    /// The locked slot of `key`, made (full) if the key has none yet.
    fn bucket(&self, key: u64, spec: &BucketSpec, now: u64) -> Guard<'_> {
        let n = self.slots;
        let window = WINDOW.min(n);
        let start = (key % n as u64) as usize;
        for i in 0..window {
            let slot = self.slot((start + i) % n);
            let hint = slot.key.load(Ordering::Acquire);
            if hint != key && hint != 0 {
                continue;
            }
            let guard = self.lock(slot);
            let current = slot.key.load(Ordering::Relaxed);
            if current == key {
                if !Self::has_spec(slot, spec) {
                    Self::reset(slot, key, spec, now);
                }
                return guard;
            }
            if current == 0 {
                Self::reset(slot, key, spec, now);
                return guard;
            }
        }
        // Every slot of the window holds another key. A full bucket is indistinguishable from
        // a new one, so it is reused. Otherwise a bucket is given up, and it comes back full on
        // its key's next request: that must not be one a flood of keys can pick. Keys a client
        // may choose (a header) are those of one rule, so the new key gives up the least
        // recently used bucket of its own rule; only when the window holds none, the least
        // recently used of the rule holding most slots there. A bucket alone of its rule (a
        // route's limit, a client's per-address bucket) is then never given up for another
        // rule's keys, unless every rule in the window has one bucket only.
        let mut seen = [(0usize, 0u64, 0u64, 0u64); WINDOW];
        let mut victim = (start, 0u64);
        for _ in 0..EVICT_ATTEMPTS {
            for (i, entry) in seen.iter_mut().enumerate().take(window) {
                let index = (start + i) % n;
                let slot = self.slot(index);
                let guard = self.lock(slot);
                let current = slot.key.load(Ordering::Relaxed);
                let full = Self::refill(slot, now) >= slot.max_tokens.load(Ordering::Relaxed);
                if full || current == key || current == 0 {
                    if current != key || !Self::has_spec(slot, spec) {
                        Self::reset(slot, key, spec, now);
                    }
                    return guard;
                }
                *entry = (
                    index,
                    current,
                    slot.rule.load(Ordering::Relaxed),
                    slot.last_used_ns.load(Ordering::Relaxed),
                );
            }
            let seen = &seen[..window];
            let count = |rule: u64| seen.iter().filter(|o| o.2 == rule).count();
            let chosen = if seen.iter().any(|e| e.2 == spec.rule) {
                seen.iter().filter(|e| e.2 == spec.rule).min_by_key(|e| e.3)
            } else {
                seen.iter().min_by_key(|e| (Reverse(count(e.2)), e.3))
            }
            .copied()
            .unwrap_or(seen[0]);
            victim = (chosen.0, chosen.1);
            let slot = self.slot(victim.0);
            let guard = self.lock(slot);
            let current = slot.key.load(Ordering::Relaxed);
            if current == key {
                if !Self::has_spec(slot, spec) {
                    Self::reset(slot, key, spec, now);
                }
                return guard;
            }
            if current == victim.1 {
                self.header().evictions.fetch_add(1, Ordering::Relaxed);
                Self::reset(slot, key, spec, now);
                return guard;
            }
            // Another process changed the chosen slot meanwhile: look again.
        }
        let slot = self.slot(victim.0);
        let guard = self.lock(slot);
        if slot.key.load(Ordering::Relaxed) != key {
            self.header().evictions.fetch_add(1, Ordering::Relaxed);
            Self::reset(slot, key, spec, now);
        }
        guard
    }

    /// Take `cost` tokens from the bucket of `key` if it holds that many.
    pub fn acquire(&self, key: u64, spec: &BucketSpec, cost: u64, now: u64) -> Decision {
        let guard = self.bucket(key, spec, now);
        let slot = guard.slot;
        slot.last_used_ns.store(now, Ordering::Relaxed);
        let tokens = Self::refill(slot, now);
        let allowed = cost <= tokens && cost <= spec.max_tokens;
        let remaining = if allowed { tokens - cost } else { tokens };
        if allowed {
            slot.tokens.store(remaining, Ordering::Relaxed);
        }
        Decision {
            allowed,
            remaining,
            reset_ns: Self::reset_ns(slot, now),
        }
    }

    /// Tokens the bucket of `key` holds now.
    pub fn available(&self, key: u64, spec: &BucketSpec, now: u64) -> u64 {
        let guard = self.bucket(key, spec, now);
        Self::refill(guard.slot, now)
    }

    /// Correct a bucket after the fact (the true cost of an LLM response is known only at its
    /// end): a positive `delta` removes tokens (never below zero), a negative one gives back.
    pub fn amend(&self, key: u64, spec: &BucketSpec, delta: i64, now: u64) -> u64 {
        let guard = self.bucket(key, spec, now);
        let slot = guard.slot;
        let tokens = Self::refill(slot, now);
        let max = slot.max_tokens.load(Ordering::Relaxed);
        let amended = if delta >= 0 {
            tokens.saturating_sub(delta as u64)
        } else {
            tokens.saturating_add(delta.unsigned_abs()).min(max)
        };
        slot.tokens.store(amended, Ordering::Relaxed);
        amended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SECOND: u64 = 1_000_000_000;

    fn spec(max: u64, fill: u64, interval: u64) -> BucketSpec {
        BucketSpec::new(max, fill, interval).unwrap()
    }

    #[test]
    fn starts_full_and_empties() {
        let t = SharedBuckets::anonymous(64).unwrap();
        let s = spec(3, 1, SECOND);
        let k = hash_key(b"route", b"");
        let got: Vec<bool> = (0..5).map(|_| t.acquire(k, &s, 1, 100).allowed).collect();
        assert_eq!(got, [true, true, true, false, false]);
        assert_eq!(t.acquire(k, &s, 1, 100).remaining, 0);
    }

    #[test]
    fn refills_per_whole_interval_and_caps() {
        let t = SharedBuckets::anonymous(64).unwrap();
        let s = spec(5, 2, SECOND);
        let k = hash_key(b"r", b"");
        let start = 1000;
        for _ in 0..5 {
            assert!(t.acquire(k, &s, 1, start).allowed);
        }
        assert!(!t.acquire(k, &s, 1, start + SECOND - 1).allowed);
        let d = t.acquire(k, &s, 1, start + SECOND);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.reset_ns, SECOND);
        // Ten idle intervals refill to the cap, not beyond.
        assert_eq!(t.available(k, &s, start + 11 * SECOND), 5);
    }

    #[test]
    fn reset_counts_down_to_the_next_fill() {
        let t = SharedBuckets::anonymous(8).unwrap();
        let s = spec(1, 1, 10 * SECOND);
        let k = hash_key(b"r", b"");
        assert_eq!(t.acquire(k, &s, 1, 0).reset_ns, 10 * SECOND);
        assert_eq!(t.acquire(k, &s, 1, 4 * SECOND).reset_ns, 6 * SECOND);
    }

    #[test]
    fn cost_above_the_bucket_is_refused() {
        let t = SharedBuckets::anonymous(8).unwrap();
        let s = spec(10, 1, SECOND);
        let k = hash_key(b"r", b"");
        assert!(!t.acquire(k, &s, 11, 0).allowed);
        assert!(t.acquire(k, &s, 10, 0).allowed);
        assert!(!t.acquire(k, &s, 1, 0).allowed);
    }

    #[test]
    fn keys_are_independent() {
        let t = SharedBuckets::anonymous(64).unwrap();
        let s = spec(1, 1, SECOND);
        let a = hash_key(b"r", b"alice");
        let b = hash_key(b"r", b"bob");
        assert_ne!(a, b);
        assert!(t.acquire(a, &s, 1, 0).allowed);
        assert!(!t.acquire(a, &s, 1, 0).allowed);
        assert!(t.acquire(b, &s, 1, 0).allowed);
    }

    #[test]
    fn a_changed_spec_starts_a_new_bucket() {
        let t = SharedBuckets::anonymous(8).unwrap();
        let k = hash_key(b"r", b"");
        assert!(t.acquire(k, &spec(1, 1, SECOND), 1, 0).allowed);
        assert!(!t.acquire(k, &spec(1, 1, SECOND), 1, 0).allowed);
        assert!(t.acquire(k, &spec(2, 1, SECOND), 1, 0).allowed);
    }

    #[test]
    fn amend_takes_and_gives_back() {
        let t = SharedBuckets::anonymous(8).unwrap();
        let s = spec(100, 10, SECOND);
        let k = hash_key(b"tokens", b"");
        assert_eq!(t.amend(k, &s, 30, 0), 70);
        assert_eq!(t.amend(k, &s, 500, 0), 0);
        assert_eq!(t.amend(k, &s, -40, 0), 40);
        assert_eq!(t.amend(k, &s, -1000, 0), 100);
    }

    #[test]
    fn a_full_window_reuses_full_buckets_then_evicts() {
        let t = SharedBuckets::anonymous(4).unwrap();
        let s = spec(2, 1, 1000 * SECOND);
        // Four keys fill the table; a full (unused) bucket can be taken over for free.
        for i in 0..4u8 {
            let k = hash_key(b"r", &[i]);
            t.available(k, &s, 0);
        }
        let fresh = hash_key(b"r", b"fresh");
        assert!(t.acquire(fresh, &s, 1, 0).allowed);
        assert_eq!(t.evictions(), 0);
        // Drain every bucket so that none is full: the next new key evicts the oldest.
        for i in 0..64u8 {
            let k = hash_key(b"r", &[i]);
            t.acquire(k, &s, 2, 1 + i as u64);
        }
        assert!(t.evictions() > 0);
    }

    /// Keys of `rule` (a table of `slots`) whose window starts at `slot`.
    fn keys_at(rule: &[u8], slots: usize, slot: usize, count: usize) -> Vec<u64> {
        (0u32..)
            .map(|i| hash_key(rule, &i.to_le_bytes()))
            .filter(|k| (k % slots as u64) as usize == slot)
            .take(count)
            .collect()
    }

    #[test]
    fn a_flood_of_one_rules_keys_gives_up_only_that_rules_buckets() {
        let slots = 256;
        let t = SharedBuckets::anonymous(slots).unwrap();
        let lone = spec(2, 1, 1000 * SECOND).with_rule(1);
        let flood = spec(100, 1, 1000 * SECOND).with_rule(2);
        let victim = hash_key(b"login", b"");
        let at = (victim % slots as u64) as usize;
        assert!(t.acquire(victim, &lone, 2, 0).allowed); // spent
        // Twenty keys of another rule land in its window, each newer than it.
        for (i, k) in keys_at(b"flood", slots, at, 20).into_iter().enumerate() {
            assert!(t.acquire(k, &flood, 1, 1 + i as u64).allowed);
        }
        assert!(t.evictions() > 0);
        assert!(!t.acquire(victim, &lone, 1, 100).allowed);
        // Rules without a bucket in the window: the one holding most slots gives one up.
        let third = spec(5, 1, 1000 * SECOND).with_rule(3);
        let other = keys_at(b"third", slots, at, 1)[0];
        assert!(t.acquire(other, &third, 1, 200).allowed);
        assert!(!t.acquire(victim, &lone, 1, 300).allowed);
        assert!(t.acquire(other, &third, 1, 400).allowed);
        assert_eq!(t.available(other, &third, 500), 3);
    }

    #[test]
    fn exact_under_contention() {
        let t = Arc::new(SharedBuckets::anonymous(1024).unwrap());
        let s = spec(1000, 1, 3600 * SECOND);
        let k = hash_key(b"hot", b"");
        let now = monotonic_ns();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| t.acquire(k, &s, 1, now).allowed)
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn shared_through_a_file_descriptor() {
        let fd = unsafe { libc::memfd_create(c"agw-test".as_ptr(), 0) };
        assert!(fd >= 0);
        let owner = SharedBuckets::initialize(fd, 32).unwrap();
        let other = SharedBuckets::attach(fd).unwrap();
        assert_eq!(other.slots(), 32);
        let s = spec(2, 1, SECOND);
        let k = hash_key(b"r", b"");
        assert!(owner.acquire(k, &s, 1, 0).allowed);
        assert!(other.acquire(k, &s, 1, 0).allowed);
        assert!(!owner.acquire(k, &s, 1, 0).allowed);
        drop(owner);
        drop(other);
        unsafe { libc::close(fd) };
    }

    #[test]
    fn attach_refuses_other_files() {
        let fd = unsafe { libc::memfd_create(c"agw-test".as_ptr(), 0) };
        assert!(unsafe { libc::ftruncate(fd, 4096) } == 0);
        assert!(matches!(
            SharedBuckets::attach(fd),
            Err(MapError::NotATable)
        ));
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_dead_holder_does_not_wedge_the_slot() {
        let t = SharedBuckets::anonymous(8).unwrap();
        let s = spec(5, 1, SECOND);
        let k = hash_key(b"r", b"");
        t.available(k, &s, 0);
        // Pretend a process that no longer exists holds the lock of every slot.
        let dead: u32 = 0x7fff_fff0;
        assert!(!process_alive(dead));
        for i in 0..t.slots() {
            t.slot(i).lock.store(dead, Ordering::Relaxed);
        }
        assert!(t.acquire(k, &s, 1, 0).allowed);
    }

    #[test]
    fn spec_validation() {
        assert!(BucketSpec::new(1, 2, SECOND).is_err());
        assert!(BucketSpec::new(1, 1, 0).is_err());
    }
}
