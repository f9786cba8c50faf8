//! Python bindings of `crate::ratelimit`: one call per rate-limit decision.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::ratelimit::{self, MapError};

fn map_error(e: MapError) -> PyErr {
    match e {
        MapError::Os(err) => PyOSError::new_err(err.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// How a bucket fills: built once per policy at config load, passed with every call.
#[pyclass(frozen, module = "agentgateway._native", name = "BucketSpec")]
pub struct PyBucketSpec {
    spec: ratelimit::BucketSpec,
}

#[pymethods]
impl PyBucketSpec {
    /// `rule`: a hash naming the policy whose buckets these are (its keys give up one another's
    /// buckets first when the table is crowded).
    #[new]
    #[pyo3(signature = (max_tokens, tokens_per_fill, fill_interval_ns, rule = 0))]
    fn new(
        max_tokens: u64,
        tokens_per_fill: u64,
        fill_interval_ns: u64,
        rule: u64,
    ) -> PyResult<Self> {
        ratelimit::BucketSpec::new(max_tokens, tokens_per_fill, fill_interval_ns)
            .map(|spec| PyBucketSpec {
                spec: spec.with_rule(rule),
            })
            .map_err(PyValueError::new_err)
    }

    #[getter]
    fn max_tokens(&self) -> u64 {
        self.spec.max_tokens
    }

    #[getter]
    fn tokens_per_fill(&self) -> u64 {
        self.spec.tokens_per_fill
    }

    #[getter]
    fn fill_interval_ns(&self) -> u64 {
        self.spec.fill_interval_ns
    }

    #[getter]
    fn rule(&self) -> u64 {
        self.spec.rule
    }
}

/// A table of token buckets in memory shared by the processes that map it.
#[pyclass(frozen, module = "agentgateway._native", name = "SharedBuckets")]
pub struct PySharedBuckets {
    table: ratelimit::SharedBuckets,
}

#[pymethods]
impl PySharedBuckets {
    /// A table private to this process.
    #[staticmethod]
    fn anonymous(slots: usize) -> PyResult<Self> {
        ratelimit::SharedBuckets::anonymous(slots)
            .map(|table| PySharedBuckets { table })
            .map_err(map_error)
    }

    /// Size the empty file `fd` (a memfd) for `slots` buckets and map it.
    #[staticmethod]
    fn initialize(fd: i32, slots: usize) -> PyResult<Self> {
        ratelimit::SharedBuckets::initialize(fd, slots)
            .map(|table| PySharedBuckets { table })
            .map_err(map_error)
    }

    /// Map the table another process initialized in `fd`.
    #[staticmethod]
    fn attach(fd: i32) -> PyResult<Self> {
        ratelimit::SharedBuckets::attach(fd)
            .map(|table| PySharedBuckets { table })
            .map_err(map_error)
    }

    #[getter]
    fn slots(&self) -> usize {
        self.table.slots()
    }

    #[getter]
    fn evictions(&self) -> u64 {
        self.table.evictions()
    }

    /// Take `cost` tokens: (allowed, tokens remaining, nanoseconds until the next fill).
    #[pyo3(signature = (key, spec, cost = 1))]
    fn acquire(&self, key: u64, spec: &PyBucketSpec, cost: u64) -> (bool, u64, u64) {
        let d = self
            .table
            .acquire(key, &spec.spec, cost, ratelimit::monotonic_ns());
        (d.allowed, d.remaining, d.reset_ns)
    }

    /// Tokens the bucket holds now.
    fn available(&self, key: u64, spec: &PyBucketSpec) -> u64 {
        self.table
            .available(key, &spec.spec, ratelimit::monotonic_ns())
    }

    /// Remove `delta` tokens (give back if negative); returns the tokens left.
    fn amend(&self, key: u64, spec: &PyBucketSpec, delta: i64) -> u64 {
        self.table
            .amend(key, &spec.spec, delta, ratelimit::monotonic_ns())
    }
}

/// The table key of a bucket: its identity and the per-request key value (never 0).
#[pyfunction]
fn bucket_key(identity: &[u8], key: &[u8]) -> u64 {
    ratelimit::hash_key(identity, key)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBucketSpec>()?;
    m.add_class::<PySharedBuckets>()?;
    m.add_function(wrap_pyfunction!(bucket_key, m)?)?;
    Ok(())
}
