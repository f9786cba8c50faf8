//! Python bindings of `crate::mcp`: session tokens, list merge, name resolution and request
//! rewriting, each one call per message with bytes in and bytes out.

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::jsonrpc::JsonRpcError;
use crate::mcp::{
    self, ListError, ListKind, ListResults, MergeOptions, ParamEdit, RequestRewrite,
    RequestRewriteError, SessionCipher, SliceSink,
};

create_exception!(
    agentgateway._native,
    SessionTokenError,
    PyValueError,
    "A session token that is malformed, tampered with, or sealed under another key or aad."
);

create_exception!(
    agentgateway._native,
    ListResultError,
    PyValueError,
    "An upstream */list result that cannot be merged.\n\n\
     Attributes: target (the target's name) and index (its position in the results), so the \
     caller can skip it (failOpen) or fail the request (failClosed)."
);

/// Seals and opens `Mcp-Session-Id` tokens under one 32-byte key (AES-256-GCM).
#[pyclass(frozen, module = "agentgateway._native", name = "SessionCipher")]
pub struct PySessionCipher {
    inner: SessionCipher,
}

#[pymethods]
impl PySessionCipher {
    /// `key` must be exactly 32 bytes; see `session_key_from_hex` for the config form.
    #[new]
    fn new(key: &[u8]) -> PyResult<Self> {
        let inner = SessionCipher::new(key).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PySessionCipher { inner })
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce; the token is
    /// base64url without padding (visible ASCII only).
    #[pyo3(signature = (plaintext, aad = b"".as_slice()), text_signature = "(self, plaintext, aad=b'')")]
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> PyResult<String> {
        self.inner.seal(plaintext, aad).map_err(|e| match e {
            mcp::SealError::Random(_) => PyOSError::new_err(e.to_string()),
            mcp::SealError::TooLong => PyValueError::new_err(e.to_string()),
        })
    }

    /// Decrypts a token sealed under this key with the same `aad`. Raises SessionTokenError
    /// for anything else.
    #[pyo3(signature = (token, aad = b"".as_slice()), text_signature = "(self, token, aad=b'')")]
    fn open<'py>(&self, py: Python<'py>, token: &str, aad: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let plaintext = self
            .inner
            .open(token, aad)
            .map_err(|e| SessionTokenError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &plaintext))
    }

    fn __repr__(&self) -> &'static str {
        "SessionCipher(<key hidden>)"
    }
}

/// The 32-byte key from its config form: exactly 64 hex digits (`openssl rand -hex 32`).
#[pyfunction]
pub fn session_key_from_hex<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
    let key = mcp::key_from_hex(text).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &key))
}

fn list_kind(kind: &str) -> PyResult<ListKind> {
    ListKind::from_member(kind).ok_or_else(|| {
        PyValueError::new_err(format!(
            "kind must be \"tools\", \"prompts\", \"resources\" or \"resourceTemplates\", got \
             {kind:?}"
        ))
    })
}

/// Refuses a `str` where a sequence of items is expected: iterating it would yield its
/// characters.
fn reject_str(value: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if value.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a sequence, not a str"
        )));
    }
    Ok(())
}

/// The `(target, result)` pairs as Python objects, kept alive while Rust borrows them.
fn results_of<'py>(
    results: &Bound<'py, PyAny>,
) -> PyResult<Vec<(Bound<'py, PyString>, Bound<'py, PyBytes>)>> {
    reject_str(results, "results")?;
    let mut pairs = Vec::with_capacity(results.len().unwrap_or(0));
    for item in results.try_iter()? {
        pairs.push(item?.extract()?);
    }
    Ok(pairs)
}

fn borrow_results<'a>(
    pairs: &'a [(Bound<'_, PyString>, Bound<'_, PyBytes>)],
) -> PyResult<Vec<(&'a str, &'a [u8])>> {
    pairs
        .iter()
        .map(|(target, body)| Ok((target.to_str()?, body.as_bytes())))
        .collect()
}

fn list_error(py: Python<'_>, error: ListError) -> PyErr {
    let err = ListResultError::new_err(error.to_string());
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr(intern!(py, "target"), &error.target)?;
        value.setattr(intern!(py, "index"), error.index)
    };
    match set() {
        Ok(()) => err,
        Err(failure) => failure,
    }
}

/// Merges the `*/list` result objects of several targets into one result object; see the
/// stub for the rules. Raises ListResultError naming a target whose result is malformed.
#[pyfunction]
#[pyo3(signature = (kind, results, *, prefix, delimiter = "_", dedupe = false, allowed = None, next_cursor = None))]
#[allow(clippy::too_many_arguments)]
pub fn merge_list_results<'py>(
    py: Python<'py>,
    kind: &str,
    results: &Bound<'py, PyAny>,
    prefix: bool,
    delimiter: &str,
    dedupe: bool,
    allowed: Option<&Bound<'py, PyAny>>,
    next_cursor: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = list_kind(kind)?;
    let pairs = results_of(results)?;
    let borrowed = borrow_results(&pairs)?;
    let scanned = ListResults::scan(kind, &borrowed).map_err(|e| list_error(py, e))?;
    let keep = match allowed {
        None => None,
        Some(allowed) => Some(allowed_flags(py, &scanned, allowed)?),
    };
    let options = MergeOptions {
        prefix,
        delimiter,
        dedupe,
        next_cursor,
    };
    let plan = scanned.plan(&options, keep.as_deref());
    PyBytes::new_with(py, plan.len(), |out| {
        let mut sink = SliceSink::new(out);
        plan.write(&mut sink);
        debug_assert_eq!(sink.written(), plan.len());
        Ok(())
    })
}

/// Asks `allowed` (any container of `"<target>\x00<name or uri>"` strings) about each item.
fn allowed_flags(
    py: Python<'_>,
    scanned: &ListResults<'_>,
    allowed: &Bound<'_, PyAny>,
) -> PyResult<Vec<bool>> {
    reject_str(allowed, "allowed")?;
    let mut key = String::new();
    let mut flags = Vec::with_capacity(scanned.items().len());
    for item in scanned.items() {
        key.clear();
        key.push_str(scanned.targets()[item.target]);
        key.push('\0');
        key.push_str(&item.key);
        flags.push(allowed.contains(PyString::new(py, &key))?);
    }
    Ok(flags)
}

/// `(target, original name or URI)` of every item of every result, in order.
#[pyfunction]
pub fn list_item_keys<'py>(
    py: Python<'py>,
    kind: &str,
    results: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let kind = list_kind(kind)?;
    let pairs = results_of(results)?;
    let borrowed = borrow_results(&pairs)?;
    let scanned = ListResults::scan(kind, &borrowed).map_err(|e| list_error(py, e))?;
    let items = scanned.items().iter().map(|item| {
        let target = &pairs[item.target].0;
        PyTuple::new(py, [target.as_any(), PyString::new(py, &item.key).as_any()])
    });
    PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
}

fn targets_of<'py>(targets: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    reject_str(targets, "targets")?;
    let mut names = Vec::with_capacity(targets.len().unwrap_or(0));
    for target in targets.try_iter()? {
        names.push(target?.cast_into::<PyString>()?);
    }
    Ok(names)
}

fn borrow_targets<'a>(names: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    names.iter().map(|name| name.to_str()).collect()
}

/// `(index of the target, original name)` for `<target><delimiter><name>`, the longest
/// matching target winning; None when no target matches.
#[pyfunction]
#[pyo3(signature = (name, targets, delimiter = "_"))]
pub fn split_prefixed_name<'py>(
    name: &Bound<'py, PyString>,
    targets: &Bound<'py, PyAny>,
    delimiter: &str,
) -> PyResult<Option<(usize, Bound<'py, PyString>)>> {
    let names = targets_of(targets)?;
    let text = name.to_str()?;
    let found = mcp::split_prefixed_name(text, &borrow_targets(&names)?, delimiter);
    Ok(found.map(|(index, original)| (index, PyString::new(name.py(), original))))
}

/// `(index of the target, original URI)` for `<target>+<uri>` where the URI has a scheme;
/// None when no target matches.
#[pyfunction]
pub fn split_prefixed_uri<'py>(
    uri: &Bound<'py, PyString>,
    targets: &Bound<'py, PyAny>,
) -> PyResult<Option<(usize, Bound<'py, PyString>)>> {
    let names = targets_of(targets)?;
    let text = uri.to_str()?;
    let found = mcp::split_prefixed_uri(text, &borrow_targets(&names)?);
    Ok(found.map(|(index, original)| (index, PyString::new(uri.py(), original))))
}

/// A `JsonRpcError` for an invalid message, with the attributes `scan_jsonrpc` sets.
fn invalid_message(py: Python<'_>, buf: &[u8], error: &crate::jsonrpc::Error) -> PyErr {
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

/// The message with its id replaced by raw JSON `new_id` and/or the string at
/// `params.<param>` replaced by `value`, in one copy.
#[pyfunction]
#[pyo3(signature = (message, *, new_id = None, param = None, value = None))]
pub fn rewrite_request<'py>(
    py: Python<'py>,
    message: &[u8],
    new_id: Option<&[u8]>,
    param: Option<&str>,
    value: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let edit = match (param, value) {
        (Some(path), Some(value)) => Some(ParamEdit { path, value }),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "param and value must be given together",
            ));
        }
    };
    let plan = RequestRewrite::plan(message, new_id, edit).map_err(|e| match e {
        RequestRewriteError::Message(e) => invalid_message(py, message, &e),
        other => PyValueError::new_err(other.to_string()),
    })?;
    PyBytes::new_with(py, plan.len(), |out| {
        let mut sink = SliceSink::new(out);
        plan.write(&mut sink);
        debug_assert_eq!(sink.written(), plan.len());
        Ok(())
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SessionTokenError", py.get_type::<SessionTokenError>())?;
    m.add("ListResultError", py.get_type::<ListResultError>())?;
    m.add_class::<PySessionCipher>()?;
    m.add_function(wrap_pyfunction!(session_key_from_hex, m)?)?;
    m.add_function(wrap_pyfunction!(merge_list_results, m)?)?;
    m.add_function(wrap_pyfunction!(list_item_keys, m)?)?;
    m.add_function(wrap_pyfunction!(split_prefixed_name, m)?)?;
    m.add_function(wrap_pyfunction!(split_prefixed_uri, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite_request, m)?)?;
    m.add("SESSION_KEY_LEN", mcp::KEY_LEN)?;
    Ok(())
}
