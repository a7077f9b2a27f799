//! Logs: one ExportLogsServiceRequest in, otel_logs rows out as Native blocks, with the rules of
//! processors/logs.py (JSON and kvlist bodies flattened into LogAttributes, severity inferred).

use std::borrow::Cow;

use crate::block::Columns;
use crate::pb::{self, Chunks, DecodeError, Type, Value, R};
use crate::severity;
use crate::values::{self, Any, Attrs, Dict, Py};

pub const COLUMNS: [(&str, &str); 16] = [
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("TraceFlags", "UInt8"),
    ("SeverityText", "String"),
    ("SeverityNumber", "UInt8"),
    ("ServiceName", "String"),
    ("Body", "String"),
    ("ResourceSchemaUrl", "String"),
    ("ResourceAttributes", "Map(String, String)"),
    ("ScopeSchemaUrl", "String"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("ScopeAttributes", "Map(String, String)"),
    ("LogAttributes", "Map(String, String)"),
    ("EventName", "String"),
];

pub struct Options {
    pub max_depth: i64,
    pub max_body_chars: usize,
    /// A JSON body's level field overrides the sender's severity (worker.severity_from_body).
    pub prefer_body_level: bool,
}

/// Severity from free text when the text is not ASCII (answered by processors/severity.py).
pub trait TextSeverity {
    fn from_text(&mut self, text: &str) -> R<Option<(String, i64)>>;
}

/// A resource's attributes and the fields the rows repeat.
pub struct Resource<'a> {
    pub attrs: Attrs<'a>,
    pub service: Cow<'a, str>,
}

/// Reads a Resource message (its occurrences merged) at `depth`.
pub fn resource<'a>(chunks: &Chunks<'a>, depth: u32) -> R<Resource<'a>> {
    let mut pairs = Vec::new();
    chunks.each(depth, |field, v| {
        if let (1, Value::Len(b)) = (field, v) {
            pairs.push(b);
        }
        Ok(())
    })?;
    let attrs = values::attributes(&pairs, depth + 1)?;
    let service = attrs.get("service.name").cloned().unwrap_or(Cow::Borrowed(""));
    Ok(Resource { attrs, service })
}

pub struct Scope<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub attrs: Attrs<'a>,
    pub dropped: u32,
}

pub fn scope<'a>(chunks: &Chunks<'a>, depth: u32) -> R<Scope<'a>> {
    let (mut name, mut version, mut dropped) = ("", "", 0u32);
    let mut pairs = Vec::new();
    chunks.each(depth, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => name = pb::text(b),
            (2, Value::Len(b)) => version = pb::text(b),
            (3, Value::Len(b)) => pairs.push(b),
            (4, Value::Varint(x)) => dropped = x as u32,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Scope { name, version, attrs: values::attributes(&pairs, depth + 1)?, dropped })
}

pub fn push_attrs(col: &mut crate::block::Col, attrs: &Attrs<'_>) {
    col.push_map(attrs.entries.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
}

/// `flatten(obj, out, depth, prefix)`: obj's leaves into `out` as dotted keys, keeping keys `out` has.
fn flatten<'a>(obj: &Dict<'a, Py<'a>>, out: &mut Attrs<'a>, depth: i64, prefix: &str) -> R<()> {
    for (key, value) in &obj.entries {
        let name = format!("{prefix}{key}");
        if let Py::Dict(inner) = value {
            if depth > 1 && !inner.is_empty() {
                flatten(inner, out, depth - 1, &format!("{name}."))?;
                continue;
            }
        }
        if out.contains(&name) {
            continue;
        }
        let text = match values::scalar_text(value) {
            Some(text) => text,
            None => {
                let mut s = String::new();
                if values::dumps(value, &mut s, 0).is_err() {
                    // too deep for orjson: the Python path keeps the body as text, with the reason
                    crate::block::flag_for_python();
                }
                Cow::Owned(s)
            }
        };
        out.set(Cow::Owned(name), text);
    }
    Ok(())
}

/// `_json_object(text, limit)`: the body as a JSON object, if it is one. A body that looks like JSON but
/// does not parse gets orjson's error message in an attribute on the Python path: such a request is
/// flagged for it (`block::flag_for_python`).
fn json_object<'a>(text: &'a str, limit: usize) -> Option<Dict<'a, Py<'a>>> {
    let first = text.chars().find(|&c| !severity::py_space(c))?;
    if first != '{' {
        return None;
    }
    let chars = text.bytes().filter(|&c| (c & 0xC0) != 0x80).count();
    if chars > limit {
        return None;
    }
    match values::loads(text) {
        Ok(Py::Dict(d)) => Some(d),
        Ok(_) => None,
        Err(_) => {
            if text.trim_end_matches(severity::py_space).ends_with('}') {
                crate::block::flag_for_python();
            }
            None
        }
    }
}

pub fn to_columns(buf: &[u8], received_ns: u64, options: &Options, text_severity: &mut dyn TextSeverity) -> R<Columns> {
    pb::validate(buf, Type::LogsRequest, 0)?;
    let mut cols = Columns::new(&COLUMNS);
    pb::each(buf, 0, |field, v| {
        if let (1, Value::Len(rl)) = (field, v) {
            resource_logs(rl, received_ns, options, text_severity, &mut cols)?;
        }
        Ok(())
    })?;
    Ok(cols)
}

fn resource_logs(buf: &[u8], received_ns: u64, options: &Options, text_severity: &mut dyn TextSeverity,
                 cols: &mut Columns) -> R<()> {
    let mut res = Chunks::default();
    let mut scopes = Vec::new();
    let mut schema_url = "";
    pb::each(buf, 1, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => res.push(b),
            (2, Value::Len(b)) => scopes.push(b),
            (3, Value::Len(b)) => schema_url = pb::text(b),
            _ => {}
        }
        Ok(())
    })?;
    let resource = resource(&res, 2)?;
    for scope_logs in scopes {
        let mut sc = Chunks::default();
        let mut records = Vec::new();
        let mut scope_url = "";
        pb::each(scope_logs, 2, |field, v| {
            match (field, v) {
                (1, Value::Len(b)) => sc.push(b),
                (2, Value::Len(b)) => records.push(b),
                (3, Value::Len(b)) => scope_url = pb::text(b),
                _ => {}
            }
            Ok(())
        })?;
        let scope = scope(&sc, 3)?;
        for record in &records {
            log_record(record, received_ns, options, text_severity, cols)?;
        }
        let n = records.len();
        let c = &mut cols.cols;
        for _ in 0..n {
            c[6].push_str(resource.service.as_bytes());
            c[8].push_str(schema_url.as_bytes());
            push_attrs(&mut c[9], &resource.attrs);
            c[10].push_str(scope_url.as_bytes());
            c[11].push_str(scope.name.as_bytes());
            c[12].push_str(scope.version.as_bytes());
            push_attrs(&mut c[13], &scope.attrs);
        }
    }
    Ok(())
}

fn log_record(buf: &[u8], received_ns: u64, options: &Options, text_severity: &mut dyn TextSeverity,
              cols: &mut Columns) -> R<()> {
    let (mut time, mut observed, mut number, mut level) = (0u64, 0u64, 0i64, "");
    let mut body = Chunks::default();
    let mut pairs = Vec::new();
    let (mut flags, mut trace_id, mut span_id): (u32, &[u8], &[u8]) = (0, b"", b"");
    let mut event_name = "";
    pb::each(buf, 3, |field, v| {
        match (field, v) {
            (1, Value::I64(x)) => time = x,
            (11, Value::I64(x)) => observed = x,
            (2, Value::Varint(x)) => number = x as i32 as i64,
            (3, Value::Len(b)) => level = pb::text(b),
            (5, Value::Len(b)) => body.push(b),
            (6, Value::Len(b)) => pairs.push(b),
            (8, Value::I32(x)) => flags = x,
            (9, Value::Len(b)) => trace_id = b,
            (10, Value::Len(b)) => span_id = b,
            (12, Value::Len(b)) => event_name = pb::text(b),
            _ => {}
        }
        Ok(())
    })?;
    let body = values::any(&body, 4)?;
    let text: Cow<str> = match &body {
        Any::Str(s) => Cow::Borrowed(*s),
        other => values::to_text(other, 4)?,
    };
    let mut attrs = values::attributes(&pairs, 4)?;
    let parsed: Option<Dict<Py>> = match &body {
        Any::Str(s) => json_object(s, options.max_body_chars),
        Any::Kvlist(_) => match values::to_python(&body, 4)? {
            Py::Dict(d) => Some(d),
            _ => None,
        },
        _ => None,
    };
    let parsed = parsed.filter(|d| !d.is_empty());
    if let Some(parsed) = &parsed {
        flatten(parsed, &mut attrs, options.max_depth, "")?;
    }
    let (mut level_out, mut number_out): (Cow<str>, i64) = (Cow::Borrowed(level), number);
    let from_body = if options.prefer_body_level { parsed.as_ref().and_then(severity::from_fields) } else { None };
    if let Some((t, n)) = from_body {
        level_out = Cow::Owned(t);
        number_out = n;
    } else if !(1..=24).contains(&number) {
        let mut inferred = parsed.as_ref().and_then(severity::from_fields);
        if inferred.is_none() {
            inferred = match severity::from_ascii_text(&text) {
                Some(found) => found.map(|(t, n)| (t.to_string(), n as i64)),
                None => text_severity.from_text(&text)?,
            };
        }
        match inferred {
            Some((t, n)) => {
                level_out = Cow::Owned(t);
                number_out = n;
            }
            None => number_out = 0,
        }
    } else if level.is_empty() {
        level_out = Cow::Borrowed(severity::from_number(number));
    }
    let ts = if time != 0 { time } else if observed != 0 { observed } else { received_ns };
    let c = &mut cols.cols;
    c[0].push_i64(crate::block::ticks(ts));
    crate::block::check_id(trace_id, 16, true);
    crate::block::check_id(span_id, 8, true);
    let mut hex = Vec::with_capacity(32);
    crate::fmt::hex(trace_id, &mut hex);
    c[1].push_str(&hex);
    hex.clear();
    crate::fmt::hex(span_id, &mut hex);
    c[2].push_str(&hex);
    c[3].push_u8((flags & 0xFF) as u8);
    c[4].push_str(level_out.as_bytes());
    c[5].push_u8(number_out as u8);
    c[7].push_str(text.as_bytes());
    push_attrs(&mut c[14], &attrs);
    c[15].push_str(event_name.as_bytes());
    Ok(())
}
