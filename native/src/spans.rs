//! Span batches held by the tail sampler: the Native block as it came from Kafka (no copy), with its
//! columns decoded to Python lists only when the sampler or a policy reads them, and sampled rows
//! gathered from many blocks straight into a new block, never through Python values.

use std::sync::OnceLock;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::block::{self, Layout, Part, View};
use crate::traces::COLUMNS;
use crate::{block_err, column_to_py, BlockError};

pub const START_NS: &str = "StartNs";
pub const SAMPLE_RATE: &str = "SampleRate";

#[pyclass(module = "maple_native", frozen)]
pub struct SpanBlock {
    data: Py<PyBytes>,
    layout: Layout,
    views: Vec<OnceLock<View>>,
    lists: Vec<OnceLock<Py<PyList>>>,
    start_ns: OnceLock<Py<PyList>>,
    timestamp: usize,
}

impl SpanBlock {
    fn column(&self, name: &str) -> Option<usize> {
        self.layout.columns.iter().position(|c| c.name == name)
    }

    fn view<'a>(&'a self, buf: &[u8], index: usize) -> &'a View {
        self.views[index].get_or_init(|| block::view_at(buf, &self.layout.columns[index], self.layout.rows))
    }

    fn list(&self, py: Python<'_>, index: usize) -> PyResult<Py<PyList>> {
        if let Some(list) = self.lists[index].get() {
            return Ok(list.clone_ref(py));
        }
        let buf = self.data.as_bytes(py);
        let col = &self.layout.columns[index];
        let values = column_to_py(py, buf, &col.ty, self.view(buf, index), 0, self.layout.rows)?;
        let list: Py<PyList> = PyList::new(py, values)?.unbind();
        Ok(self.lists[index].get_or_init(|| list).clone_ref(py))
    }
}

#[pymethods]
impl SpanBlock {
    /// A span batch from otel.spans in Native format; raises BlockError unless it has every otel_traces
    /// column with the type the compiled core writes.
    #[new]
    fn new(data: Bound<'_, PyBytes>) -> PyResult<Self> {
        let buf = data.as_bytes();
        let layout = block::layout(buf, 0).map_err(block_err)?;
        if layout.end != buf.len() {
            return Err(BlockError::new_err("a span batch must be one Native block"));
        }
        for (name, ty) in COLUMNS {
            match layout.columns.iter().find(|c| c.name == name) {
                None => return Err(BlockError::new_err(format!("span batch column {name} is missing"))),
                Some(c) if c.ty != ty => {
                    return Err(BlockError::new_err(format!("span batch column {name} is {} (expected {ty})", c.ty)))
                }
                Some(_) => {}
            }
        }
        let n = layout.columns.len();
        let timestamp = layout.columns.iter().position(|c| c.name == "Timestamp").unwrap();
        Ok(SpanBlock {
            data: data.unbind(),
            layout,
            views: (0..n).map(|_| OnceLock::new()).collect(),
            lists: (0..n).map(|_| OnceLock::new()).collect(),
            start_ns: OnceLock::new(),
            timestamp,
        })
    }

    #[getter]
    fn rows(&self) -> usize {
        self.layout.rows
    }

    /// Bytes of the block (what the sampler holds for it, besides decoded columns).
    #[getter]
    fn nbytes(&self, py: Python<'_>) -> usize {
        self.data.as_bytes(py).len()
    }

    fn __len__(&self) -> usize {
        self.layout.rows
    }

    fn __contains__(&self, name: &str) -> bool {
        name == START_NS || self.column(name).is_some()
    }

    /// A column as a list (decoded once); `StartNs` is the span start in Unix nanoseconds (Timestamp).
    fn __getitem__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyList>> {
        if name == START_NS {
            if let Some(list) = self.start_ns.get() {
                return Ok(list.clone_ref(py));
            }
            let list = self.list(py, self.timestamp)?;
            return Ok(self.start_ns.get_or_init(|| list).clone_ref(py));
        }
        match self.column(name) {
            Some(index) => self.list(py, index),
            None => Err(PyKeyError::new_err(name.to_string())),
        }
    }
}

/// A Native block of the given rows ((block, row) in order) with the columns `names`, and a `SampleRate`
/// Float64 column from `sample_rates` (one per row) when given.
#[pyfunction]
#[pyo3(signature = (spans, names, sample_rates=None))]
pub fn gather<'py>(py: Python<'py>, spans: Vec<(Bound<'py, SpanBlock>, usize)>, names: Vec<String>,
                   sample_rates: Option<Vec<f64>>) -> PyResult<Bound<'py, PyBytes>> {
    if let Some(rates) = &sample_rates {
        if rates.len() != spans.len() {
            return Err(BlockError::new_err(format!("{} sample rates for {} rows", rates.len(), spans.len())));
        }
    }
    // Consecutive rows of one block become one run.
    let mut runs: Vec<(&Bound<'py, SpanBlock>, usize, usize)> = Vec::new();
    for (blk, row) in &spans {
        if *row >= blk.get().layout.rows {
            return Err(BlockError::new_err(format!("row {row} of a span batch of {}", blk.get().layout.rows)));
        }
        match runs.last_mut() {
            Some(last) if last.0.is(blk) && last.2 == *row => last.2 = row + 1,
            _ => runs.push((blk, *row, row + 1)),
        }
    }
    let mut out = Vec::new();
    block::put_varint(&mut out, (names.len() + sample_rates.is_some() as usize) as u64);
    block::put_varint(&mut out, spans.len() as u64);
    for name in &names {
        let mut ty: Option<&str> = None;
        let mut parts = Vec::with_capacity(runs.len());
        for (blk, a, b) in &runs {
            let sb = blk.get();
            let index = sb.column(name).ok_or_else(|| BlockError::new_err(format!("no column {name} in a span batch")))?;
            let col_ty = sb.layout.columns[index].ty.as_str();
            match ty {
                None => ty = Some(col_ty),
                Some(t) if t != col_ty => {
                    return Err(BlockError::new_err(format!("column {name} is {t} in one span batch and {col_ty} in another")))
                }
                _ => {}
            }
            let buf = sb.data.as_bytes(py);
            parts.push(Part { buf, view: sb.view(buf, index), a: *a, b: *b });
        }
        let ty = ty.unwrap_or_else(|| COLUMNS.iter().find(|(n, _)| n == name).map_or("String", |(_, t)| t));
        block::put_str(&mut out, name.as_bytes());
        block::put_str(&mut out, ty.as_bytes());
        block::write_parts(&parts, &mut out);
    }
    if let Some(rates) = sample_rates {
        block::put_str(&mut out, SAMPLE_RATE.as_bytes());
        block::put_str(&mut out, b"Float64");
        for rate in rates {
            out.extend_from_slice(&rate.to_le_bytes());
        }
    }
    Ok(PyBytes::new(py, &out))
}
