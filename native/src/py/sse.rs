//! Python bindings of `crate::sse`: one call per received chunk, events out as a list.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::sse::{self, Decoder, Item, MIN_EVENT_SIZE};

create_exception!(
    agentgateway._native,
    SseError,
    PyValueError,
    "An event stream broke the decoder's max_event_size bound; the stream should be closed."
);

/// Default bound on one event: large enough for big MCP tool results and resource reads,
/// small enough that a runaway stream cannot exhaust a worker.
const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// A dispatched server-sent event.
#[pyclass(frozen, module = "agentgateway._native", name = "SseEvent")]
pub struct PyEvent {
    data: Py<PyBytes>,
    event: Py<PyString>,
    id: Option<Py<PyString>>,
}

#[pymethods]
impl PyEvent {
    #[new]
    #[pyo3(signature = (data, event = None, id = None))]
    fn new(
        py: Python<'_>,
        data: Py<PyBytes>,
        event: Option<Py<PyString>>,
        id: Option<Py<PyString>>,
    ) -> Self {
        let event = event.unwrap_or_else(|| intern!(py, "message").clone().unbind());
        PyEvent { data, event, id }
    }

    /// The data lines joined with b"\n", undecoded.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    /// The event type; "message" when the stream named none.
    #[getter]
    fn event(&self, py: Python<'_>) -> Py<PyString> {
        self.event.clone_ref(py)
    }

    /// The last event ID when the event was dispatched (it persists across events until the
    /// stream changes it), or None when there is none.
    #[getter]
    fn id(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.id.as_ref().map(|id| id.clone_ref(py))
    }

    fn __eq__(&self, py: Python<'_>, other: PyRef<'_, Self>) -> PyResult<bool> {
        let same_id = match (&self.id, &other.id) {
            (None, None) => true,
            (Some(a), Some(b)) => PyAnyMethods::eq(a.bind(py).as_any(), b)?,
            _ => false,
        };
        Ok(same_id
            && self.data.as_bytes(py) == other.data.as_bytes(py)
            && PyAnyMethods::eq(self.event.bind(py).as_any(), &other.event)?)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "SseEvent(data={}, event={}, id={})",
            self.data.bind(py).repr()?,
            self.event.bind(py).repr()?,
            match &self.id {
                Some(id) => id.bind(py).repr()?.to_string(),
                None => "None".to_owned(),
            }
        ))
    }
}

/// A comment line, reported only by `SseDecoder.feed_with_comments`.
#[pyclass(frozen, module = "agentgateway._native", name = "SseComment")]
pub struct PyComment {
    text: Py<PyBytes>,
}

#[pymethods]
impl PyComment {
    #[new]
    fn new(text: Py<PyBytes>) -> Self {
        PyComment { text }
    }

    /// The comment without its leading ':' and one following space.
    #[getter]
    fn text(&self, py: Python<'_>) -> Py<PyBytes> {
        self.text.clone_ref(py)
    }

    fn __eq__(&self, py: Python<'_>, other: PyRef<'_, Self>) -> bool {
        self.text.as_bytes(py) == other.text.as_bytes(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("SseComment(text={})", self.text.bind(py).repr()?))
    }
}

/// Incremental decoder of one event stream at a time (WHATWG rules). Feed it chunks as they
/// arrive, in any sizes.
#[pyclass(module = "agentgateway._native", name = "SseDecoder")]
pub struct PyDecoder {
    inner: Decoder,
}

impl PyDecoder {
    /// Feeds `chunk`, turning each item into a Python object; comments are kept only when
    /// `comments` is set.
    fn decode<'py>(
        &mut self,
        py: Python<'py>,
        chunk: &[u8],
        comments: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut items: Vec<Bound<'py, PyAny>> = Vec::new();
        let mut failure = None;
        let fed = self.inner.feed(chunk, |item| {
            if failure.is_some() {
                return;
            }
            let object = match item {
                Item::Event(event) => event_object(py, &event),
                Item::Comment(text) if comments => Bound::new(
                    py,
                    PyComment {
                        text: PyBytes::new(py, text).unbind(),
                    },
                )
                .map(Bound::into_any),
                Item::Comment(_) => return,
            };
            match object {
                Ok(object) => items.push(object),
                Err(e) => failure = Some(e),
            }
        });
        fed.map_err(|e| SseError::new_err(e.to_string()))?;
        if let Some(e) = failure {
            return Err(e);
        }
        PyList::new(py, items)
    }
}

fn event_object<'py>(py: Python<'py>, event: &sse::Event<'_>) -> PyResult<Bound<'py, PyAny>> {
    let event_type = if event.event == "message" {
        intern!(py, "message").clone()
    } else {
        PyString::new(py, event.event)
    };
    let id = (!event.id.is_empty()).then(|| PyString::new(py, event.id).unbind());
    let event = PyEvent {
        data: PyBytes::new(py, event.data).unbind(),
        event: event_type.unbind(),
        id,
    };
    Ok(Bound::new(py, event)?.into_any())
}

#[pymethods]
impl PyDecoder {
    /// `max_event_size` bounds the data of one event plus the line being read (at least 16
    /// bytes); `last_event_id` seeds the last event ID when resuming a stream.
    #[new]
    #[pyo3(
        signature = (max_event_size = DEFAULT_MAX_EVENT_SIZE, last_event_id = ""),
        text_signature = "(max_event_size=16777216, last_event_id='')"
    )]
    fn new(max_event_size: usize, last_event_id: &str) -> PyResult<Self> {
        if max_event_size < MIN_EVENT_SIZE {
            return Err(PyValueError::new_err(format!(
                "max_event_size must be at least {MIN_EVENT_SIZE} bytes, got {max_event_size}"
            )));
        }
        Ok(PyDecoder {
            inner: Decoder::new(max_event_size, last_event_id),
        })
    }

    /// Decodes a chunk and returns the events it completed; comments are dropped. Raises
    /// SseError when the stream breaks max_event_size (events of the same chunk are lost;
    /// the stream is over).
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyList>> {
        self.decode(py, chunk, false)
    }

    /// Like `feed`, with comment lines (keep-alives) as SseComment items in stream order.
    fn feed_with_comments<'py>(
        &mut self,
        py: Python<'py>,
        chunk: &[u8],
    ) -> PyResult<Bound<'py, PyList>> {
        self.decode(py, chunk, true)
    }

    /// Ends the stream, discarding an unfinished event as the standard requires; returns
    /// whether anything was discarded. The decoder can then read a new stream (a
    /// reconnection), keeping last_event_id and retry.
    fn finish(&mut self) -> bool {
        self.inner.finish()
    }

    /// The last event ID (updated at every blank line, even when no event is dispatched),
    /// or None when there is none.
    #[getter]
    fn last_event_id(&self) -> Option<&str> {
        Some(self.inner.last_event_id()).filter(|id| !id.is_empty())
    }

    /// The reconnection time in milliseconds from the last valid `retry` field.
    #[getter]
    fn retry(&self) -> Option<u64> {
        self.inner.retry()
    }

    #[getter]
    fn max_event_size(&self) -> usize {
        self.inner.max_event_size()
    }
}

/// Encodes one event: optional `event`, `id` and `retry` fields, `data` split on CRLF, CR
/// and LF into data lines, and the closing blank line. Raises ValueError for a line break in
/// `event` or `id`, or NUL in `id`.
#[pyfunction]
#[pyo3(signature = (data, event = None, id = None, retry = None))]
pub fn encode_sse_event<'py>(
    py: Python<'py>,
    data: &[u8],
    event: Option<&str>,
    id: Option<&str>,
    retry: Option<u64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    sse::encode_event(&mut out, data, event, id, retry)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &out))
}

/// Encodes a comment, one ':' line per line of `text`; `b""` gives the minimal keep-alive
/// `b":\n"`.
#[pyfunction]
#[pyo3(signature = (text = b"".as_slice()), text_signature = "(text=b'')")]
pub fn encode_sse_comment<'py>(py: Python<'py>, text: &[u8]) -> Bound<'py, PyBytes> {
    let mut out = Vec::new();
    sse::encode_comment(&mut out, text);
    PyBytes::new(py, &out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SseError", py.get_type::<SseError>())?;
    m.add_class::<PyEvent>()?;
    m.add_class::<PyComment>()?;
    m.add_class::<PyDecoder>()?;
    m.add_function(wrap_pyfunction!(encode_sse_event, m)?)?;
    m.add_function(wrap_pyfunction!(encode_sse_comment, m)?)?;
    Ok(())
}
