//! Python binding of `crate::otlp`: a queued span record in, its protobuf bytes out.

use std::borrow::Cow;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::otlp::{self, Span, Value};

/// Text as OTLP carries it: UTF-8; a lone surrogate becomes U+FFFD rather than failing the
/// whole batch.
fn text<'a>(s: &'a Bound<'_, PyString>) -> Cow<'a, str> {
    match s.to_str() {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => Cow::Owned(s.to_string_lossy().into_owned()),
    }
}

fn displayed(object: &Bound<'_, PyAny>) -> PyResult<Cow<'static, str>> {
    Ok(Cow::Owned(object.str()?.to_string_lossy().into_owned()))
}

/// Levels of lists and maps kept in an attribute value. A deeper container (or one that
/// contains itself) becomes `TOO_DEEP`: converting and encoding recurse, and an unbounded value
/// would recurse until the exporter thread's stack ran out, taking the process with it. Each
/// level is two protobuf messages deep, and decoders limit nesting (upb, C++ and Java protobuf:
/// 100 messages), so a collector can still read what is kept.
const MAX_DEPTH: u32 = 16;
const TOO_DEEP: &str = "[nested too deeply]";

/// A Python attribute value as an `AnyValue`: str, bool, int (beyond int64: its decimal text),
/// float, bytes (decoded, invalid UTF-8 replaced), list or tuple, dict; anything else as its
/// `str()`. `depth`: the containers around it.
fn value<'a>(object: &'a Bound<'_, PyAny>, depth: u32) -> PyResult<Value<'a>> {
    if let Ok(s) = object.cast_exact::<PyString>() {
        return Ok(Value::Str(text(s)));
    }
    if let Ok(b) = object.cast_exact::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if object.is_exact_instance_of::<PyInt>() {
        return Ok(match object.extract::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Str(displayed(object)?),
        });
    }
    if let Ok(f) = object.cast_exact::<PyFloat>() {
        return Ok(Value::Double(f.value()));
    }
    if let Ok(b) = object.cast::<PyBytes>() {
        return Ok(Value::Str(Cow::Owned(
            String::from_utf8_lossy(b.as_bytes()).into_owned(),
        )));
    }
    let container = object.is_instance_of::<PyList>()
        || object.is_instance_of::<PyTuple>()
        || object.is_instance_of::<PyDict>();
    if container && depth >= MAX_DEPTH {
        return Ok(Value::Str(Cow::Borrowed(TOO_DEEP)));
    }
    if let Ok(list) = object.cast::<PyList>() {
        return list
            .iter()
            .map(|item| owned_value(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|item| owned_value(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        let mut pairs = Vec::with_capacity(dict.len());
        for (key, item) in dict.iter() {
            pairs.push((displayed(&key)?, owned_value(&item, depth + 1)?));
        }
        return Ok(Value::KvList(pairs));
    }
    Ok(Value::Str(displayed(object)?))
}

/// `value` for an item a container yields (it does not outlive this call's borrow).
fn owned_value(object: &Bound<'_, PyAny>, depth: u32) -> PyResult<Value<'static>> {
    value(object, depth).map(to_static)
}

fn to_static(v: Value<'_>) -> Value<'static> {
    match v {
        Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Int(i),
        Value::Double(d) => Value::Double(d),
        Value::Array(items) => Value::Array(items.into_iter().map(to_static).collect()),
        Value::KvList(pairs) => Value::KvList(
            pairs
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), to_static(v)))
                .collect(),
        ),
    }
}

/// encode_span(trace_id, span, state) -> bytes
/// --
///
/// A finished span of the trace `trace_id` (the client's `state`, or None) as the
/// `ScopeSpans.spans` field of an OTLP export request. Attributes whose value is None are left
/// out.
#[pyfunction]
fn encode_span<'py>(
    py: Python<'py>,
    trace_id: u128,
    span: &Bound<'py, PyAny>,
    state: Option<&Bound<'py, PyBytes>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let name = span.getattr(intern!(py, "name"))?;
    let name = name
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("span name must be str"))?;
    let message = span.getattr(intern!(py, "message"))?;
    let message = message
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("span message must be str"))?;
    let attributes = span.getattr(intern!(py, "attributes"))?;
    let attributes = attributes
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("span attributes must be a dict"))?;
    // The keys and values stay alive in `items` while the span borrows their text.
    let items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> =
        attributes.iter().filter(|(_, v)| !v.is_none()).collect();
    let mut encoded_attributes = Vec::with_capacity(items.len());
    for (key, item) in &items {
        let key = match key.cast::<PyString>() {
            Ok(s) => text(s),
            Err(_) => displayed(key)?,
        };
        encoded_attributes.push((key, value(item, 0)?));
    }
    let fields = Span {
        trace_id,
        span_id: span.getattr(intern!(py, "span_id"))?.extract()?,
        parent_id: span.getattr(intern!(py, "parent_id"))?.extract()?,
        state: state.map(|s| s.as_bytes()),
        name: text(name),
        kind: span.getattr(intern!(py, "kind"))?.extract()?,
        start_ns: span.getattr(intern!(py, "start_ns"))?.extract()?,
        end_ns: span.getattr(intern!(py, "end_ns"))?.extract()?,
        attributes: encoded_attributes,
        status: span.getattr(intern!(py, "status"))?.extract()?,
        message: text(message),
    };
    let mut out = Vec::new();
    otlp::encode_span(&mut out, &fields);
    Ok(PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_span, m)?)?;
    Ok(())
}
