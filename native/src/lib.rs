//! agentgateway's native hot path. Pure-Rust modules take bytes and return bytes or plain
//! values; `py` is the only pyo3 layer and is compiled with the `python` feature.

pub mod cel;
pub mod jsonrpc;
pub mod mcp;
pub mod otlp;
pub mod ratelimit;
pub mod sse;

#[cfg(feature = "python")]
mod py;
