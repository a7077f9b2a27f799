//! Traces: one ExportTraceServiceRequest in, otel_traces rows out as Native blocks, one set per span
//! partition (crc32 of the trace id), and the request's RED points (processors/traces.py, red.py and
//! topologies/batches.py `trace_batches`).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::block::Columns;
use crate::logs::{push_attrs, resource, scope};
use crate::pb::{self, Chunks, Type, Value, R};
use crate::values::{self, Attrs};

pub const COLUMNS: [(&str, &str); 22] = [
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("ParentSpanId", "String"),
    ("TraceState", "String"),
    ("SpanName", "String"),
    ("SpanKind", "String"),
    ("ServiceName", "String"),
    ("ResourceAttributes", "Map(String, String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("SpanAttributes", "Map(String, String)"),
    ("Duration", "UInt64"),
    ("StatusCode", "String"),
    ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"),
    ("Events.Name", "Array(String)"),
    ("Events.Attributes", "Array(Map(String, String))"),
    ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", "Array(Map(String, String))"),
];

pub const SPAN_KINDS: [&str; 6] = ["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"];
pub const STATUS_CODES: [&str; 3] = ["Unset", "Ok", "Error"];
pub const KIND_NAMES: [&str; 6] = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                                   "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"];
pub const STATUS_NAMES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

pub struct RedOptions {
    pub buckets_ms: Vec<f64>,
    /// Extra series dimensions: (attribute name, default when neither the span nor its resource has it).
    pub dimensions: Vec<(String, Option<String>)>,
}

/// One RED series: the spans of one (service, name, kind, status, extra dimensions) in this request.
pub struct Series {
    pub service: String,
    pub name: String,
    pub kind: usize,
    pub status: usize,
    pub extra: Vec<Option<String>>,
    pub calls: u64,
    pub counts: Vec<u64>,
    pub total_ms: f64,
    pub low_ms: f64,
    pub high_ms: f64,
    pub start_ns: Option<u64>,
}

pub struct Output {
    /// Span rows per span partition, in partition order.
    pub partitions: Vec<(u32, Columns)>,
    pub series: Vec<Series>,
    pub spans: usize,
}

static CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB88320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// zlib's crc32, as `span_partition` uses it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

fn hex_or_empty_if(raw: &[u8], zero_text_len: Option<usize>, out: &mut Vec<u8>) {
    out.clear();
    crate::fmt::hex(raw, out);
    match zero_text_len {
        // traces.to_columns: "" when the hex is exactly all zeros of the id's full length
        Some(len) => {
            if out.len() == len && out.iter().all(|&c| c == b'0') {
                out.clear();
            }
        }
        // `_hex_id` for links: "" for an absent or all-zero id of any length
        None => {
            if raw.iter().all(|&b| b == 0) {
                out.clear();
            }
        }
    }
}

pub fn to_output(buf: &[u8], span_partitions: u32, red: &RedOptions) -> R<Output> {
    pb::validate(buf, Type::TraceRequest, 0)?;
    let mut out = Output { partitions: Vec::new(), series: Vec::new(), spans: 0 };
    let mut by_partition: HashMap<u32, usize> = HashMap::new();
    let mut series_index: HashMap<(String, String, usize, usize, Vec<Option<String>>), usize> = HashMap::new();
    let mut scratch = Scratch::default();
    pb::each(buf, 0, |field, v| {
        if let (1, Value::Len(rs)) = (field, v) {
            resource_spans(rs, span_partitions, red, &mut out, &mut by_partition, &mut series_index, &mut scratch)?;
        }
        Ok(())
    })?;
    out.partitions.sort_by_key(|(p, _)| *p);
    Ok(out)
}

#[derive(Default)]
struct Scratch {
    trace: Vec<u8>,
    span: Vec<u8>,
    parent: Vec<u8>,
}

fn resource_spans(buf: &[u8], span_partitions: u32, red: &RedOptions, out: &mut Output,
                  by_partition: &mut HashMap<u32, usize>,
                  series_index: &mut HashMap<(String, String, usize, usize, Vec<Option<String>>), usize>,
                  scratch: &mut Scratch) -> R<()> {
    let mut res = Chunks::default();
    let mut scopes = Vec::new();
    pb::each(buf, 1, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => res.push(b),
            (2, Value::Len(b)) => scopes.push(b),
            _ => {}
        }
        Ok(())
    })?;
    let resource = resource(&res, 2)?;
    for scope_spans in scopes {
        let mut sc = Chunks::default();
        let mut spans = Vec::new();
        pb::each(scope_spans, 2, |field, v| {
            match (field, v) {
                (1, Value::Len(b)) => sc.push(b),
                (2, Value::Len(b)) => spans.push(b),
                _ => {}
            }
            Ok(())
        })?;
        let scope = scope(&sc, 3)?;
        for span_buf in spans {
            span(span_buf, span_partitions, red, &resource, &scope, out, by_partition, series_index, scratch)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn span(buf: &[u8], span_partitions: u32, red: &RedOptions, resource: &crate::logs::Resource<'_>,
        scope: &crate::logs::Scope<'_>, out: &mut Output, by_partition: &mut HashMap<u32, usize>,
        series_index: &mut HashMap<(String, String, usize, usize, Vec<Option<String>>), usize>,
        scratch: &mut Scratch) -> R<()> {
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (b"", b"", b"");
    let (mut trace_state, mut name) = ("", "");
    let (mut kind, mut start, mut end) = (0i64, 0u64, 0u64);
    let mut pairs = Vec::new();
    let mut events = Vec::new();
    let mut links = Vec::new();
    let mut status = Chunks::default();
    pb::each(buf, 3, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => trace_id = b,
            (2, Value::Len(b)) => span_id = b,
            (3, Value::Len(b)) => trace_state = pb::text(b),
            (4, Value::Len(b)) => parent = b,
            (5, Value::Len(b)) => name = pb::text(b),
            (6, Value::Varint(x)) => kind = x as i32 as i64,
            (7, Value::I64(x)) => start = x,
            (8, Value::I64(x)) => end = x,
            (9, Value::Len(b)) => pairs.push(b),
            (11, Value::Len(b)) => events.push(b),
            (13, Value::Len(b)) => links.push(b),
            (15, Value::Len(b)) => status.push(b),
            _ => {}
        }
        Ok(())
    })?;
    let (mut status_message, mut code) = ("", 0i64);
    status.each(4, |field, v| {
        match (field, v) {
            (2, Value::Len(b)) => status_message = pb::text(b),
            (3, Value::Varint(x)) => code = x as i32 as i64,
            _ => {}
        }
        Ok(())
    })?;
    let attrs = values::attributes(&pairs, 4)?;
    crate::block::check_id(trace_id, 16, false);
    crate::block::check_id(span_id, 8, false);
    crate::block::check_id(parent, 8, true);
    hex_or_empty_if(trace_id, Some(32), &mut scratch.trace);
    hex_or_empty_if(span_id, Some(16), &mut scratch.span);
    hex_or_empty_if(parent, Some(16), &mut scratch.parent);
    let partition = crc32(&scratch.trace) % span_partitions;
    let slot = *by_partition.entry(partition).or_insert_with(|| {
        out.partitions.push((partition, Columns::new(&COLUMNS)));
        out.partitions.len() - 1
    });
    let kind = if (0..6).contains(&kind) { kind as usize } else { 0 };
    let code = if (0..3).contains(&code) { code as usize } else { 0 };
    let duration = end.saturating_sub(start);
    {
        let c = &mut out.partitions[slot].1.cols;
        c[0].push_i64(crate::block::ticks(start));
        c[1].push_str(&scratch.trace);
        c[2].push_str(&scratch.span);
        c[3].push_str(&scratch.parent);
        c[4].push_str(trace_state.as_bytes());
        c[5].push_str(name.as_bytes());
        c[6].push_str(SPAN_KINDS[kind].as_bytes());
        c[7].push_str(resource.service.as_bytes());
        push_attrs(&mut c[8], &resource.attrs);
        c[9].push_str(scope.name.as_bytes());
        c[10].push_str(scope.version.as_bytes());
        push_attrs(&mut c[11], &attrs);
        c[12].push_u64(duration);
        c[13].push_str(STATUS_CODES[code].as_bytes());
        c[14].push_str(status_message.as_bytes());
        for e in &events {
            let (mut time, mut ename) = (0u64, "");
            let mut eattrs = Vec::new();
            pb::each(e, 4, |field, v| {
                match (field, v) {
                    (1, Value::I64(x)) => time = x,
                    (2, Value::Len(b)) => ename = pb::text(b),
                    (3, Value::Len(b)) => eattrs.push(b),
                    _ => {}
                }
                Ok(())
            })?;
            c[15].inner().push_i64(crate::block::ticks(time));
            c[16].inner().push_str(ename.as_bytes());
            push_attrs(c[17].inner(), &values::attributes(&eattrs, 5)?);
        }
        c[15].end_row();
        c[16].end_row();
        c[17].end_row();
        let mut id = Vec::new();
        for l in &links {
            let (mut ltrace, mut lspan, mut lstate): (&[u8], &[u8], &str) = (b"", b"", "");
            let mut lattrs = Vec::new();
            pb::each(l, 4, |field, v| {
                match (field, v) {
                    (1, Value::Len(b)) => ltrace = b,
                    (2, Value::Len(b)) => lspan = b,
                    (3, Value::Len(b)) => lstate = pb::text(b),
                    (4, Value::Len(b)) => lattrs.push(b),
                    _ => {}
                }
                Ok(())
            })?;
            // `_hex_id`: an all-zero id of the right length is "", any other must have the right length
            if ltrace.iter().any(|&b| b != 0) || ltrace.len() != 16 {
                crate::block::check_id(ltrace, 16, false);
            }
            if lspan.iter().any(|&b| b != 0) || lspan.len() != 8 {
                crate::block::check_id(lspan, 8, false);
            }
            hex_or_empty_if(ltrace, None, &mut id);
            c[18].inner().push_str(&id);
            hex_or_empty_if(lspan, None, &mut id);
            c[19].inner().push_str(&id);
            c[20].inner().push_str(lstate.as_bytes());
            push_attrs(c[21].inner(), &values::attributes(&lattrs, 5)?);
        }
        for i in 18..22 {
            c[i].end_row();
        }
    }
    out.spans += 1;
    // RED: every span counts once in its series.
    let extra: Vec<Option<String>> = red
        .dimensions
        .iter()
        .map(|(dim, default)| dimension(dim, default, &attrs, &resource.attrs))
        .collect();
    let service = resource.service.as_ref();
    let key = (service.to_string(), name.to_string(), kind, code, extra);
    let index = match series_index.get(&key) {
        Some(&i) => i,
        None => {
            let i = out.series.len();
            out.series.push(Series {
                service: key.0.clone(),
                name: key.1.clone(),
                kind,
                status: code,
                extra: key.4.clone(),
                calls: 0,
                counts: vec![0; red.buckets_ms.len() + 1],
                total_ms: 0.0,
                low_ms: f64::INFINITY,
                high_ms: f64::NEG_INFINITY,
                start_ns: None,
            });
            series_index.insert(key, i);
            i
        }
    };
    let entry = &mut out.series[index];
    let ms = duration as f64 / 1e6;
    entry.calls += 1;
    let bucket = red.buckets_ms.partition_point(|&b| b < ms);
    entry.counts[bucket] += 1;
    entry.total_ms += ms;
    if ms < entry.low_ms {
        entry.low_ms = ms;
    }
    if ms > entry.high_ms {
        entry.high_ms = ms;
    }
    if entry.start_ns.is_none_or(|s| start < s) {
        entry.start_ns = Some(start);
    }
    Ok(())
}

fn dimension(name: &str, default: &Option<String>, span: &Attrs<'_>, resource: &Attrs<'_>) -> Option<String> {
    span.get(name)
        .or_else(|| resource.get(name))
        .map(|v: &Cow<str>| v.to_string())
        .or_else(|| default.clone())
}
