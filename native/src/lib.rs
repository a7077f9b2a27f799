//! maple_native: Maple's compiled core for the per-record transforms (OTLP request -> Native row
//! blocks), the Native block operations the sampler and the sink need, and nothing else. The Python
//! processors (processors/) define the behaviour; tests compare the two on the same inputs.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

mod block;
mod fmt;
mod logs;
mod metrics;
mod pb;
mod severity;
mod spans;
mod traces;
mod values;

create_exception!(maple_native, DecodeError, PyValueError, "The request is not a valid OTLP protobuf message.");
create_exception!(maple_native, RowTooLarge, PyValueError, "One row alone is over the row batch limit.");
create_exception!(maple_native, BlockError, PyValueError, "The bytes are not a Native block Maple can read.");
create_exception!(maple_native, NeedsPython, PyValueError,
                  "The request holds an item the processors refuse: convert it with them, item by item.");

fn check_range() -> PyResult<()> {
    if block::take_out_of_range() {
        return Err(NeedsPython::new_err("an item the processors refuse (a time past 2106, an id of the wrong length)"));
    }
    Ok(())
}

pub(crate) fn decode_err(e: pb::DecodeError) -> PyErr {
    DecodeError::new_err(format!("Error parsing message: {}", e.0))
}

pub(crate) fn block_err(e: block::BlockError) -> PyErr {
    BlockError::new_err(e.0)
}

/// (rows, block) pairs of at most `limit` bytes each.
fn blocks_list<'py>(py: Python<'py>, cols: &block::Columns, limit: usize) -> PyResult<Bound<'py, PyList>> {
    let blocks = cols
        .blocks(limit)
        .map_err(|size| RowTooLarge::new_err(format!("a row of {size} bytes exceeds the {limit}-byte row batch limit")))?;
    let list = PyList::empty(py);
    for (rows, bytes) in blocks {
        list.append((rows, PyBytes::new(py, &bytes)))?;
    }
    Ok(list)
}

struct PySeverity<'py> {
    callback: Bound<'py, PyAny>,
}

impl logs::TextSeverity for PySeverity<'_> {
    fn from_text(&mut self, text: &str) -> pb::R<Option<(String, i64)>> {
        let result = self.callback.call1((text,)).map_err(|_| pb::DecodeError("severity.from_text failed"))?;
        if result.is_none() {
            return Ok(None);
        }
        result.extract::<(String, i64)>().map(Some).map_err(|_| pb::DecodeError("severity.from_text returned no (text, number)"))
    }
}

/// One raw logs record (ExportLogsServiceRequest bytes) as otel_logs Native blocks: [(rows, block)].
#[pyfunction]
#[pyo3(signature = (value, received_ns, max_depth, max_body_chars, limit, from_text, prefer_body_level=false))]
#[allow(clippy::too_many_arguments)]
fn logs_blocks<'py>(py: Python<'py>, value: &[u8], received_ns: u64, max_depth: i64, max_body_chars: usize,
                    limit: usize, from_text: Bound<'py, PyAny>, prefer_body_level: bool)
                    -> PyResult<Bound<'py, PyList>> {
    let options = logs::Options { max_depth, max_body_chars, prefer_body_level };
    let mut severity = PySeverity { callback: from_text };
    block::take_out_of_range();
    let cols = logs::to_columns(value, received_ns, &options, &mut severity).map_err(decode_err)?;
    check_range()?;
    if cols.rows() == 0 {
        return Ok(PyList::empty(py));
    }
    blocks_list(py, &cols, limit)
}

/// One raw traces record as ([(span partition, [(rows, block)])], [(table, [(rows, block)])]): otel_traces
/// blocks per span partition (ascending), then the RED points' tables (otel_metrics_histogram, _sum).
#[pyfunction]
#[pyo3(signature = (value, span_partitions, received_ns, buckets_ms, dimensions, limit))]
fn trace_blocks<'py>(py: Python<'py>, value: &[u8], span_partitions: u32, received_ns: u64, buckets_ms: Vec<f64>,
                     dimensions: Vec<(String, Option<String>)>, limit: usize)
                     -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    if span_partitions == 0 {
        return Err(PyValueError::new_err("span_partitions must be at least 1"));
    }
    let red = traces::RedOptions { buckets_ms, dimensions };
    block::take_out_of_range();
    let out = traces::to_output(value, span_partitions, &red).map_err(decode_err)?;
    check_range()?;
    let spans = PyList::empty(py);
    let tables = PyList::empty(py);
    if out.spans == 0 {
        return Ok((spans, tables));
    }
    for (partition, cols) in &out.partitions {
        spans.append((*partition, blocks_list(py, cols, limit)?))?;
    }
    let (hists, sums) = metrics::red_tables(&out.series, received_ns, &red.dimensions, &red.buckets_ms);
    tables.append((metrics::HISTOGRAM, blocks_list(py, &hists, limit)?))?;
    tables.append((metrics::SUM, blocks_list(py, &sums, limit)?))?;
    Ok((spans, tables))
}

/// One raw metrics record as [(table, [(rows, block)])], tables sorted by name.
#[pyfunction]
fn metric_blocks<'py>(py: Python<'py>, value: &[u8], limit: usize) -> PyResult<Bound<'py, PyList>> {
    block::take_out_of_range();
    let mut out = metrics::to_tables(value).map_err(decode_err)?;
    check_range()?;
    out.tables.sort_by_key(|(t, _)| *t);
    let list = PyList::empty(py);
    for (table, cols) in &out.tables {
        list.append((*table, blocks_list(py, cols, limit)?))?;
    }
    Ok(list)
}

// -- blocks ------------------------------------------------------------------------------------------

/// Rows in a stream of Native blocks.
#[pyfunction]
fn block_rows(data: &[u8]) -> PyResult<usize> {
    Ok(block::parse_all(data).map_err(block_err)?.iter().map(|b| b.rows).sum())
}

/// The stream's blocks, each as its own bytes.
#[pyfunction]
fn split_stream<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        block::parse_one(data, &mut pos).map_err(block_err)?;
        list.append(PyBytes::new(py, &data[start..pos]))?;
    }
    Ok(list)
}

/// One block cut in two halves by rows; None when it holds fewer than two rows.
#[pyfunction]
fn split_block<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let mut pos = 0;
    let parsed = block::parse_one(data, &mut pos).map_err(block_err)?;
    if pos != data.len() {
        return Err(BlockError::new_err("more than one block"));
    }
    if parsed.rows < 2 {
        return Ok(None);
    }
    let middle = parsed.rows / 2;
    let first = block::gather(&[(data, &parsed, 0, middle)], None).map_err(block_err)?;
    let second = block::gather(&[(data, &parsed, middle, parsed.rows)], None).map_err(block_err)?;
    Ok(Some(PyTuple::new(py, [PyBytes::new(py, &first), PyBytes::new(py, &second)])?))
}

/// The given rows (in that order) of one block, as a new block.
#[pyfunction]
fn take_rows<'py>(py: Python<'py>, data: &[u8], rows: Vec<usize>) -> PyResult<Bound<'py, PyBytes>> {
    let mut pos = 0;
    let parsed = block::parse_one(data, &mut pos).map_err(block_err)?;
    if let Some(bad) = rows.iter().find(|&&r| r >= parsed.rows) {
        return Err(BlockError::new_err(format!("row {bad} of a block of {}", parsed.rows)));
    }
    let runs: Vec<_> = runs_of(&rows).into_iter().map(|(a, b)| (data, &parsed, a, b)).collect();
    if runs.is_empty() {
        let out = block::gather(&[(data, &parsed, 0, 0)], None).map_err(block_err)?;
        return Ok(PyBytes::new(py, &out));
    }
    let out = block::gather(&runs, None).map_err(block_err)?;
    Ok(PyBytes::new(py, &out))
}

/// Consecutive rows merged into ranges.
fn runs_of(rows: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &r in rows {
        match out.last_mut() {
            Some(last) if last.1 == r => last.1 = r + 1,
            _ => out.push((r, r + 1)),
        }
    }
    out
}

fn scalar_to_py<'py>(py: Python<'py>, kind: block::Scalar, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    use block::Scalar::*;
    let b8 = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap() };
    Ok(match kind {
        U8 => bytes[0].into_pyobject(py)?.into_any(),
        I8 => (bytes[0] as i8).into_pyobject(py)?.into_any(),
        Bool => (bytes[0] != 0).into_pyobject(py)?.to_owned().into_any(),
        U16 => u16::from_le_bytes([bytes[0], bytes[1]]).into_pyobject(py)?.into_any(),
        I16 => i16::from_le_bytes([bytes[0], bytes[1]]).into_pyobject(py)?.into_any(),
        U32 | DateTime => u32::from_le_bytes(bytes.try_into().unwrap()).into_pyobject(py)?.into_any(),
        I32 => i32::from_le_bytes(bytes.try_into().unwrap()).into_pyobject(py)?.into_any(),
        F32 => (f32::from_le_bytes(bytes.try_into().unwrap()) as f64).into_pyobject(py)?.into_any(),
        U64 => u64::from_le_bytes(b8(bytes)).into_pyobject(py)?.into_any(),
        I64 | DateTime64 => i64::from_le_bytes(b8(bytes)).into_pyobject(py)?.into_any(),
        F64 => f64::from_le_bytes(b8(bytes)).into_pyobject(py)?.into_any(),
    })
}

/// Elements a..b of a column as Python values (DateTime64 as integer ticks, maps as dicts).
pub(crate) fn column_to_py<'py>(py: Python<'py>, buf: &[u8], ty: &str, view: &block::View, a: usize, b: usize)
                     -> PyResult<Vec<Bound<'py, PyAny>>> {
    let mut out = Vec::with_capacity(b.saturating_sub(a));
    match view {
        block::View::Fixed { width, start } => {
            let kind = block::scalar(ty).ok_or_else(|| BlockError::new_err(format!("type {ty}")))?;
            for i in a..b {
                out.push(scalar_to_py(py, kind, &buf[start + i * width..start + (i + 1) * width])?);
            }
        }
        block::View::Str { starts } => {
            for i in a..b {
                let mut pos = starts[i] as usize;
                let len = pb::varint(buf, &mut pos).unwrap() as usize;
                let bytes = &buf[pos..pos + len];
                out.push(match std::str::from_utf8(bytes) {
                    Ok(s) => s.into_pyobject(py)?.into_any(),
                    Err(_) => PyBytes::new(py, bytes).into_any(),
                });
            }
        }
        block::View::Arr { offsets, inner } => {
            let inner_ty = &ty.trim()["Array(".len()..ty.trim().len() - 1];
            for i in a..b {
                let (s, e) = block::elements(buf, *offsets, i, i + 1);
                out.push(PyList::new(py, column_to_py(py, buf, inner_ty, inner, s, e)?)?.into_any());
            }
        }
        block::View::Map { offsets, keys, values } => {
            let inner = &ty.trim()["Map(".len()..ty.trim().len() - 1];
            let comma = top_comma(inner).ok_or_else(|| BlockError::new_err(format!("type {ty}")))?;
            let (kt, vt) = (&inner[..comma], &inner[comma + 1..]);
            for i in a..b {
                let (s, e) = block::elements(buf, *offsets, i, i + 1);
                let ks = column_to_py(py, buf, kt, keys, s, e)?;
                let vs = column_to_py(py, buf, vt, values, s, e)?;
                let dict = PyDict::new(py);
                for (k, v) in ks.into_iter().zip(vs) {
                    dict.set_item(k, v)?;
                }
                out.push(dict.into_any());
            }
        }
    }
    Ok(out)
}

fn top_comma(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// A stream of Native blocks as {column: [values]} (blocks concatenated), for tests and slow paths.
#[pyfunction]
fn decode_block<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let blocks = block::parse_all(data).map_err(block_err)?;
    let out = PyDict::new(py);
    for parsed in &blocks {
        for col in &parsed.columns {
            let values = column_to_py(py, data, &col.ty, &col.view, 0, parsed.rows)?;
            let list = match out.get_item(&col.name)? {
                Some(list) => list.cast_into::<PyList>()?,
                None => {
                    let list = PyList::empty(py);
                    out.set_item(&col.name, &list)?;
                    list
                }
            };
            for v in values {
                list.append(v)?;
            }
        }
    }
    Ok(out)
}

/// Column names and types of the first block.
#[pyfunction]
fn block_columns(data: &[u8]) -> PyResult<Vec<(String, String)>> {
    let mut pos = 0;
    let parsed = block::parse_one(data, &mut pos).map_err(block_err)?;
    Ok(parsed.columns.into_iter().map(|c| (c.name, c.ty)).collect())
}

/// FNV-1a 64 (the Collector's probabilistic sampling hash), as processors/sampling/probabilistic.py.
#[pyfunction]
fn fnv1a64(data: &[u8]) -> u64 {
    let mut value: u64 = 0xCBF29CE484222325;
    for &byte in data {
        value = (value ^ byte as u64).wrapping_mul(0x100000001B3);
    }
    value
}

#[pymodule]
fn maple_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DecodeError", m.py().get_type::<DecodeError>())?;
    m.add("RowTooLarge", m.py().get_type::<RowTooLarge>())?;
    m.add("BlockError", m.py().get_type::<BlockError>())?;
    m.add("NeedsPython", m.py().get_type::<NeedsPython>())?;
    m.add_function(wrap_pyfunction!(logs_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(trace_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(metric_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(block_rows, m)?)?;
    m.add_class::<spans::SpanBlock>()?;
    m.add_function(wrap_pyfunction!(spans::gather, m)?)?;
    m.add_function(wrap_pyfunction!(split_stream, m)?)?;
    m.add_function(wrap_pyfunction!(split_block, m)?)?;
    m.add_function(wrap_pyfunction!(take_rows, m)?)?;
    m.add_function(wrap_pyfunction!(decode_block, m)?)?;
    m.add_function(wrap_pyfunction!(block_columns, m)?)?;
    m.add_function(wrap_pyfunction!(fnv1a64, m)?)?;
    Ok(())
}
