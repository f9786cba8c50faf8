//! Python bindings of `crate::jsonrpc`: one call per message, spans and raw bytes out.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::jsonrpc::{self, Envelope, Kind, Message, RewriteError, Span};

create_exception!(
    agentgateway._native,
    JsonRpcError,
    PyValueError,
    "A message the gateway must answer with a JSON-RPC error instead of forwarding.\n\n\
     Attributes: code (-32700 parse error or -32600 invalid request), message (the precise \
     reason), id (the raw id bytes to answer with, or None when unreadable)."
);

/// Builds (without raising) the `JsonRpcError` for `error`, found in `buf`.
fn json_rpc_error(py: Python<'_>, buf: &[u8], error: &jsonrpc::Error) -> PyErr {
    let message = error.to_string();
    let err = JsonRpcError::new_err(message.clone());
    let value = err.value(py);
    let id = error.id.map(|span| PyBytes::new(py, span.slice(buf)));
    let set = || -> PyResult<()> {
        value.setattr(intern!(py, "code"), error.code())?;
        value.setattr(intern!(py, "message"), message)?;
        value.setattr(intern!(py, "id"), id)
    };
    match set() {
        Ok(()) => err,
        Err(failure) => failure,
    }
}

fn rewrite_error(py: Python<'_>, buf: &[u8], error: RewriteError) -> PyErr {
    match error {
        RewriteError::Message(e) => json_rpc_error(py, buf, &e),
        other => PyValueError::new_err(other.to_string()),
    }
}

fn span_tuple(span: Option<Span>) -> Option<(usize, usize)> {
    span.map(|s| (s.start, s.end))
}

/// The envelope of one scanned message: its kind and where its members are. Attributes are
/// built on access from the retained input bytes, so unused ones cost nothing.
#[pyclass(frozen, module = "agentgateway._native", name = "JsonRpcEnvelope")]
pub struct PyEnvelope {
    raw: Py<PyBytes>,
    /// `None` for a batch.
    envelope: Option<Envelope>,
}

impl PyEnvelope {
    fn field(&self, pick: impl Fn(&Envelope) -> Option<Span>) -> Option<Span> {
        self.envelope.as_ref().and_then(pick)
    }

    fn slice<'py>(&self, py: Python<'py>, span: Option<Span>) -> Option<Bound<'py, PyBytes>> {
        span.map(|s| PyBytes::new(py, s.slice(self.raw.as_bytes(py))))
    }
}

#[pymethods]
impl PyEnvelope {
    /// "request", "notification", "result", "error", or "batch" for a top-level array.
    #[getter]
    fn kind<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        let name = match self.envelope.map(|e| e.kind) {
            Some(Kind::Request) => intern!(py, "request"),
            Some(Kind::Notification) => intern!(py, "notification"),
            Some(Kind::Result) => intern!(py, "result"),
            Some(Kind::Error) => intern!(py, "error"),
            None => intern!(py, "batch"),
        };
        name.clone()
    }

    #[getter]
    fn is_batch(&self) -> bool {
        self.envelope.is_none()
    }

    /// The scanned bytes; spans index into them.
    #[getter]
    fn raw(&self, py: Python<'_>) -> Py<PyBytes> {
        self.raw.clone_ref(py)
    }

    /// The raw id text (`b'"abc"'`, `b'42'`, or `b'null'` in an error response answering an
    /// unreadable id); None when the message has no id.
    #[getter]
    fn id<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.slice(py, self.field(|e| e.id))
    }

    #[getter]
    fn id_span(&self) -> Option<(usize, usize)> {
        span_tuple(self.field(|e| e.id))
    }

    /// The decoded method name of a request or notification.
    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        let name = self.envelope.as_ref()?.method(self.raw.as_bytes(py))?;
        Some(PyString::new(py, &name))
    }

    /// The raw `params` (an object or array) of a request or notification.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.slice(py, self.field(|e| e.params))
    }

    #[getter]
    fn params_span(&self) -> Option<(usize, usize)> {
        span_tuple(self.field(|e| e.params))
    }

    #[getter]
    fn result<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.slice(py, self.field(|e| e.result))
    }

    #[getter]
    fn result_span(&self) -> Option<(usize, usize)> {
        span_tuple(self.field(|e| e.result))
    }

    /// The raw `error` object of an error response.
    #[getter]
    fn error<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.slice(py, self.field(|e| e.error))
    }

    #[getter]
    fn error_span(&self) -> Option<(usize, usize)> {
        span_tuple(self.field(|e| e.error))
    }

    #[getter]
    fn error_code(&self) -> Option<i64> {
        self.envelope.and_then(|e| e.error_code)
    }

    /// The message with its id replaced by `new_id` (raw JSON: a string or integer token),
    /// copied once. Raises ValueError for a message without id or an invalid new id.
    fn with_id<'py>(&self, py: Python<'py>, new_id: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let buf = self.raw.as_bytes(py);
        let envelope = self
            .envelope
            .ok_or_else(|| rewrite_error(py, buf, RewriteError::Batch))?;
        let parts = envelope
            .id_splice(buf, new_id)
            .map_err(|e| rewrite_error(py, buf, e))?;
        concat(py, parts)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let kind = self.kind(py);
        if self.envelope.is_none() {
            return Ok(format!("JsonRpcEnvelope(kind='{kind}')"));
        }
        let id = self.id(py).into_pyobject(py)?.repr()?;
        let method = self.method(py).into_pyobject(py)?.repr()?;
        Ok(format!(
            "JsonRpcEnvelope(kind='{kind}', id={id}, method={method})"
        ))
    }
}

/// Copies `parts` into one new bytes object, with no intermediate buffer.
fn concat<'py>(py: Python<'py>, parts: [&[u8]; 3]) -> PyResult<Bound<'py, PyBytes>> {
    let len = parts.iter().map(|p| p.len()).sum();
    PyBytes::new_with(py, len, |out| {
        let mut at = 0;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(())
    })
}

/// Scans one JSON-RPC message, or recognizes a batch (kind "batch"; see
/// `scan_jsonrpc_batch`). Raises JsonRpcError when the bytes are not a valid message.
#[pyfunction]
pub fn scan_jsonrpc(py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<PyEnvelope> {
    let buf = data.as_bytes();
    let envelope = match jsonrpc::scan(buf) {
        Ok(Message::Single(envelope)) => Some(envelope),
        Ok(Message::Batch(_)) => None,
        Err(e) => return Err(json_rpc_error(py, buf, &e)),
    };
    Ok(PyEnvelope {
        raw: data.clone().unbind(),
        envelope,
    })
}

/// Splits a batch into the raw bytes of its elements. Raises JsonRpcError when the data is
/// not JSON (-32700) or not a non-empty array (-32600).
#[pyfunction]
pub fn split_jsonrpc_batch<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let spans = jsonrpc::split_batch(data).map_err(|e| json_rpc_error(py, data, &e))?;
    PyList::new(py, spans.iter().map(|s| PyBytes::new(py, s.slice(data))))
}

/// Scans every element of a batch in one call. Each item is the element's envelope (its
/// `raw` holds the element's own bytes, ready to forward) or, for an invalid element, the
/// JsonRpcError to answer it with; JSON-RPC answers elements one by one. Raises
/// JsonRpcError when the batch as a whole is not JSON or not a non-empty array.
#[pyfunction]
pub fn scan_jsonrpc_batch<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let spans = jsonrpc::split_batch(data).map_err(|e| json_rpc_error(py, data, &e))?;
    let mut items = Vec::with_capacity(spans.len());
    for span in spans {
        let raw = PyBytes::new(py, span.slice(data));
        let item = match jsonrpc::scan_message(raw.as_bytes()) {
            Ok(envelope) => {
                let envelope = PyEnvelope {
                    raw: raw.unbind(),
                    envelope: Some(envelope),
                };
                Bound::new(py, envelope)?.into_any()
            }
            Err(e) => json_rpc_error(py, raw.as_bytes(), &e)
                .into_value(py)
                .into_bound(py)
                .into_any(),
        };
        items.push(item);
    }
    PyList::new(py, items)
}

/// Returns `data` with the message id replaced by `new_id` (raw JSON: a string or integer
/// token). Raises JsonRpcError for an invalid message and ValueError for a batch, a message
/// without id or an invalid new id.
#[pyfunction]
pub fn rewrite_jsonrpc_id<'py>(
    py: Python<'py>,
    data: &[u8],
    new_id: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let parts = match jsonrpc::scan(data).map_err(|e| json_rpc_error(py, data, &e))? {
        Message::Single(envelope) => envelope.id_splice(data, new_id),
        Message::Batch(_) => Err(RewriteError::Batch),
    };
    concat(py, parts.map_err(|e| rewrite_error(py, data, e))?)
}

/// The first member name the top-level object of `data` repeats (decoded), or None; with
/// `nested`, the first one any object of `data` repeats. ValueError when the text cannot be
/// scanned to its end (malformed, or nested past the scanner's depth limit).
#[pyfunction]
#[pyo3(signature = (data, nested = false))]
fn json_duplicate_member(data: &[u8], nested: bool) -> PyResult<Option<String>> {
    let found = if nested {
        jsonrpc::first_nested_duplicate_member(data)
    } else {
        jsonrpc::first_duplicate_member(data)
    };
    found.map_err(|e| PyValueError::new_err(e.to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("JsonRpcError", py.get_type::<JsonRpcError>())?;
    m.add_class::<PyEnvelope>()?;
    m.add_function(wrap_pyfunction!(scan_jsonrpc, m)?)?;
    m.add_function(wrap_pyfunction!(scan_jsonrpc_batch, m)?)?;
    m.add_function(wrap_pyfunction!(split_jsonrpc_batch, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite_jsonrpc_id, m)?)?;
    m.add_function(wrap_pyfunction!(json_duplicate_member, m)?)?;
    m.add("JSONRPC_MAX_DEPTH", jsonrpc::MAX_DEPTH)?;
    Ok(())
}
