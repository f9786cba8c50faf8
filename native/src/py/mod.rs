//! The only pyo3 layer: thin wrappers that move bytes across the boundary once per call.
//!
//! Calls do not release the GIL: a worker runs one event loop thread, messages are small, and
//! releasing and re-taking the GIL would cost more than the scan it frees.

use pyo3::prelude::*;

mod cel;
mod jsonrpc;
mod mcp;
mod otlp;
mod pattern;
mod ratelimit;
mod sse;

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    cel::register(m)?;
    jsonrpc::register(m)?;
    mcp::register(m)?;
    sse::register(m)?;
    ratelimit::register(m)?;
    otlp::register(m)?;
    pattern::register(m)?;
    Ok(())
}
