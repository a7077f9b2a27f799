//! Metrics: one ExportMetricsServiceRequest in, one row per data point out, in its type's table, as
//! Native blocks (processors/metrics.py); and RED points from the traces transform (processors/red.py).

use std::borrow::Cow;

use crate::block::{Col, Columns};
use crate::logs::{push_attrs, resource, scope};
use crate::pb::{self, Chunks, Type, Value, R};
use crate::traces::{Series, KIND_NAMES, SPAN_KINDS, STATUS_CODES, STATUS_NAMES};
use crate::values::{self, Attrs};

pub const GAUGE: &str = "otel_metrics_gauge";
pub const SUM: &str = "otel_metrics_sum";
pub const HISTOGRAM: &str = "otel_metrics_histogram";
pub const EXP_HISTOGRAM: &str = "otel_metrics_exponential_histogram";
pub const SUMMARY: &str = "otel_metrics_summary";

const MAP: &str = "Map(String, String)";
const TIME: &str = "DateTime64(9)";

const COMMON: [(&str, &str); 15] = [
    ("ResourceAttributes", MAP),
    ("ResourceSchemaUrl", "String"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("ScopeAttributes", MAP),
    ("ScopeDroppedAttrCount", "UInt32"),
    ("ScopeSchemaUrl", "String"),
    ("ServiceName", "String"),
    ("MetricName", "String"),
    ("MetricDescription", "String"),
    ("MetricUnit", "String"),
    ("Attributes", MAP),
    ("StartTimeUnix", TIME),
    ("TimeUnix", TIME),
    ("Flags", "UInt32"),
];
const EXEMPLARS: [(&str, &str); 5] = [
    ("Exemplars.FilteredAttributes", "Array(Map(String, String))"),
    ("Exemplars.TimeUnix", "Array(DateTime64(9))"),
    ("Exemplars.Value", "Array(Float64)"),
    ("Exemplars.SpanId", "Array(String)"),
    ("Exemplars.TraceId", "Array(String)"),
];

/// The columns of a metrics table, in processors/metrics.py's order.
pub fn spec(table: &str) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = COMMON.to_vec();
    let specific: &[(&'static str, &'static str)] = match table {
        GAUGE => &[("Value", "Float64")],
        SUM => &[("Value", "Float64"), ("AggregationTemporality", "Int32"), ("IsMonotonic", "Bool")],
        HISTOGRAM => &[("Count", "UInt64"), ("Sum", "Float64"), ("BucketCounts", "Array(UInt64)"),
                       ("ExplicitBounds", "Array(Float64)"), ("Min", "Float64"), ("Max", "Float64"),
                       ("AggregationTemporality", "Int32")],
        EXP_HISTOGRAM => &[("Count", "UInt64"), ("Sum", "Float64"), ("Scale", "Int32"), ("ZeroCount", "UInt64"),
                           ("PositiveOffset", "Int32"), ("PositiveBucketCounts", "Array(UInt64)"),
                           ("NegativeOffset", "Int32"), ("NegativeBucketCounts", "Array(UInt64)"),
                           ("Min", "Float64"), ("Max", "Float64"), ("AggregationTemporality", "Int32")],
        _ => &[("Count", "UInt64"), ("Sum", "Float64"), ("ValueAtQuantiles.Quantile", "Array(Float64)"),
               ("ValueAtQuantiles.Value", "Array(Float64)")],
    };
    out.extend_from_slice(specific);
    if table != SUMMARY {
        out.extend_from_slice(&EXEMPLARS);
    }
    out
}

/// What every row of one metric shares.
struct Common<'a, 'r> {
    resource: &'r Attrs<'a>,
    resource_url: &'a str,
    scope_name: &'a str,
    scope_version: &'a str,
    scope_attrs: &'r Attrs<'a>,
    dropped: u32,
    scope_url: &'a str,
    service: &'r str,
    name: &'a str,
    description: &'a str,
    unit: &'a str,
}

fn push_common(c: &mut [Col], common: &Common<'_, '_>, attrs: &Attrs<'_>, start: u64, time: u64, flags: u32) {
    push_attrs(&mut c[0], common.resource);
    c[1].push_str(common.resource_url.as_bytes());
    c[2].push_str(common.scope_name.as_bytes());
    c[3].push_str(common.scope_version.as_bytes());
    push_attrs(&mut c[4], common.scope_attrs);
    c[5].push_u32(common.dropped);
    c[6].push_str(common.scope_url.as_bytes());
    c[7].push_str(common.service.as_bytes());
    c[8].push_str(common.name.as_bytes());
    c[9].push_str(common.description.as_bytes());
    c[10].push_str(common.unit.as_bytes());
    push_attrs(&mut c[11], attrs);
    c[12].push_i64(crate::block::ticks(start));
    c[13].push_i64(crate::block::ticks(time));
    c[14].push_u32(flags);
}

/// Tables in first-seen order, each with its columns.
pub struct Tables {
    pub tables: Vec<(&'static str, Columns)>,
}

impl Tables {
    fn get(&mut self, table: &'static str) -> &mut Columns {
        let i = match self.tables.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                self.tables.push((table, Columns::new(&spec(table))));
                self.tables.len() - 1
            }
        };
        &mut self.tables[i].1
    }
}

pub fn to_tables(buf: &[u8]) -> R<Tables> {
    pb::validate(buf, Type::MetricsRequest, 0)?;
    let mut out = Tables { tables: Vec::new() };
    pb::each(buf, 0, |field, v| {
        if let (1, Value::Len(rm)) = (field, v) {
            resource_metrics(rm, &mut out)?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn resource_metrics(buf: &[u8], out: &mut Tables) -> R<()> {
    let mut res = Chunks::default();
    let mut scopes = Vec::new();
    let mut url = "";
    pb::each(buf, 1, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => res.push(b),
            (2, Value::Len(b)) => scopes.push(b),
            (3, Value::Len(b)) => url = pb::text(b),
            _ => {}
        }
        Ok(())
    })?;
    let resource = resource(&res, 2)?;
    for scope_metrics in scopes {
        let mut sc = Chunks::default();
        let mut metrics = Vec::new();
        let mut scope_url = "";
        pb::each(scope_metrics, 2, |field, v| {
            match (field, v) {
                (1, Value::Len(b)) => sc.push(b),
                (2, Value::Len(b)) => metrics.push(b),
                (3, Value::Len(b)) => scope_url = pb::text(b),
                _ => {}
            }
            Ok(())
        })?;
        let scope = scope(&sc, 3)?;
        for m in metrics {
            let (mut name, mut description, mut unit) = ("", "", "");
            let mut data: Option<(u32, Chunks)> = None;
            pb::each(m, 3, |field, v| {
                match (field, v) {
                    (1, Value::Len(b)) => name = pb::text(b),
                    (2, Value::Len(b)) => description = pb::text(b),
                    (3, Value::Len(b)) => unit = pb::text(b),
                    (5 | 7 | 9 | 10 | 11, Value::Len(b)) => match &mut data {
                        Some((kind, chunks)) if *kind == field => chunks.push(b),
                        _ => data = Some((field, Chunks::one(b))),
                    },
                    _ => {}
                }
                Ok(())
            })?;
            let Some((kind, data)) = data else { continue };
            let common = Common {
                resource: &resource.attrs,
                resource_url: url,
                scope_name: scope.name,
                scope_version: scope.version,
                scope_attrs: &scope.attrs,
                dropped: scope.dropped,
                scope_url,
                service: resource.service.as_ref(),
                name,
                description,
                unit,
            };
            metric_data(kind, &data, &common, out)?;
        }
    }
    Ok(())
}

fn metric_data(kind: u32, data: &Chunks<'_>, common: &Common<'_, '_>, out: &mut Tables) -> R<()> {
    let mut points = Vec::new();
    let (mut temporality, mut monotonic) = (0i32, false);
    data.each(4, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => points.push(b),
            (2, Value::Varint(x)) if kind != 5 && kind != 11 => temporality = x as i32,
            (3, Value::Varint(x)) if kind == 7 => monotonic = x != 0,
            _ => {}
        }
        Ok(())
    })?;
    if points.is_empty() {
        return Ok(());
    }
    let table = match kind {
        5 => GAUGE,
        7 => SUM,
        9 => HISTOGRAM,
        10 => EXP_HISTOGRAM,
        _ => SUMMARY,
    };
    let cols = &mut out.get(table).cols;
    for p in points {
        match kind {
            5 | 7 => number_point(p, common, cols, kind == 7, temporality, monotonic)?,
            9 => histogram_point(p, common, cols, temporality)?,
            10 => exp_histogram_point(p, common, cols, temporality)?,
            _ => summary_point(p, common, cols)?,
        }
    }
    Ok(())
}

/// `_number(point)`: as_int as a float, else as_double (0.0 when neither is set).
fn number(value: &mut f64, field: u32, v: Value<'_>, double_field: u32, int_field: u32) {
    match v {
        Value::I64(x) if field == double_field => *value = f64::from_bits(x),
        Value::I64(x) if field == int_field => *value = x as i64 as f64,
        _ => {}
    }
}

struct Exemplar<'a> {
    attrs: Attrs<'a>,
    time: u64,
    value: f64,
    span_id: &'a [u8],
    trace_id: &'a [u8],
}

fn exemplar<'a>(buf: &'a [u8], depth: u32) -> R<Exemplar<'a>> {
    let mut pairs = Vec::new();
    let (mut time, mut value, mut span_id, mut trace_id) = (0u64, 0.0f64, &b""[..], &b""[..]);
    pb::each(buf, depth, |field, v| {
        match (field, v) {
            (7, Value::Len(b)) => pairs.push(b),
            (2, Value::I64(x)) => time = x,
            (4, Value::Len(b)) => span_id = b,
            (5, Value::Len(b)) => trace_id = b,
            _ => number(&mut value, field, v, 3, 6),
        }
        Ok(())
    })?;
    Ok(Exemplar { attrs: values::attributes(&pairs, depth + 1)?, time, value, span_id, trace_id })
}

fn push_exemplars(cols: &mut [Col], first: usize, exemplars: &[Exemplar<'_>]) {
    let mut hex = Vec::new();
    for e in exemplars {
        crate::block::check_id(e.span_id, 8, true);
        crate::block::check_id(e.trace_id, 16, true);
        push_attrs(cols[first].inner(), &e.attrs);
        cols[first + 1].inner().push_i64(crate::block::ticks(e.time));
        cols[first + 2].inner().push_f64(e.value);
        hex.clear();
        crate::fmt::hex(e.span_id, &mut hex);
        cols[first + 3].inner().push_str(&hex);
        hex.clear();
        crate::fmt::hex(e.trace_id, &mut hex);
        cols[first + 4].inner().push_str(&hex);
    }
    for c in &mut cols[first..first + 5] {
        c.end_row();
    }
}

fn number_point(buf: &[u8], common: &Common<'_, '_>, cols: &mut [Col], sum: bool, temporality: i32,
                monotonic: bool) -> R<()> {
    let mut pairs = Vec::new();
    let mut exemplar_bufs = Vec::new();
    let (mut start, mut time, mut value, mut flags) = (0u64, 0u64, 0.0f64, 0u32);
    pb::each(buf, 5, |field, v| {
        match (field, v) {
            (7, Value::Len(b)) => pairs.push(b),
            (2, Value::I64(x)) => start = x,
            (3, Value::I64(x)) => time = x,
            (5, Value::Len(b)) => exemplar_bufs.push(b),
            (8, Value::Varint(x)) => flags = x as u32,
            _ => number(&mut value, field, v, 4, 6),
        }
        Ok(())
    })?;
    let attrs = values::attributes(&pairs, 6)?;
    let exemplars = exemplar_bufs.iter().map(|b| exemplar(b, 6)).collect::<R<Vec<_>>>()?;
    push_common(cols, common, &attrs, start, time, flags);
    cols[15].push_f64(value);
    if sum {
        cols[16].push_i32(temporality);
        cols[17].push_u8(monotonic as u8);
        push_exemplars(cols, 18, &exemplars);
    } else {
        push_exemplars(cols, 16, &exemplars);
    }
    Ok(())
}

fn histogram_point(buf: &[u8], common: &Common<'_, '_>, cols: &mut [Col], temporality: i32) -> R<()> {
    let mut pairs = Vec::new();
    let mut exemplar_bufs = Vec::new();
    let (mut start, mut time, mut count, mut sum, mut flags, mut min, mut max) = (0u64, 0u64, 0u64, 0.0, 0u32, 0.0, 0.0);
    let (mut buckets, mut bounds) = (Vec::new(), Vec::new());
    pb::each(buf, 5, |field, v| {
        match (field, v) {
            (9, Value::Len(b)) => pairs.push(b),
            (2, Value::I64(x)) => start = x,
            (3, Value::I64(x)) => time = x,
            (4, Value::I64(x)) => count = x,
            (5, Value::I64(x)) => sum = f64::from_bits(x),
            (6, _) => pb::packed_i64(v, &mut buckets),
            (7, _) => pb::packed_i64(v, &mut bounds),
            (8, Value::Len(b)) => exemplar_bufs.push(b),
            (10, Value::Varint(x)) => flags = x as u32,
            (11, Value::I64(x)) => min = f64::from_bits(x),
            (12, Value::I64(x)) => max = f64::from_bits(x),
            _ => {}
        }
        Ok(())
    })?;
    let attrs = values::attributes(&pairs, 6)?;
    let exemplars = exemplar_bufs.iter().map(|b| exemplar(b, 6)).collect::<R<Vec<_>>>()?;
    push_common(cols, common, &attrs, start, time, flags);
    cols[15].push_u64(count);
    cols[16].push_f64(sum);
    for b in &buckets {
        cols[17].inner().push_u64(*b);
    }
    cols[17].end_row();
    for b in &bounds {
        cols[18].inner().push_f64(f64::from_bits(*b));
    }
    cols[18].end_row();
    cols[19].push_f64(min);
    cols[20].push_f64(max);
    cols[21].push_i32(temporality);
    push_exemplars(cols, 22, &exemplars);
    Ok(())
}

fn buckets(chunks: &Chunks<'_>, depth: u32) -> R<(i32, Vec<u64>)> {
    let (mut offset, mut counts) = (0i32, Vec::new());
    chunks.each(depth, |field, v| {
        match (field, v) {
            (1, Value::Varint(x)) => {
                let z = x as u32;
                offset = ((z >> 1) as i32) ^ -((z & 1) as i32);
            }
            (2, _) => pb::packed_varint(v, &mut counts),
            _ => {}
        }
        Ok(())
    })?;
    Ok((offset, counts))
}

fn exp_histogram_point(buf: &[u8], common: &Common<'_, '_>, cols: &mut [Col], temporality: i32) -> R<()> {
    let mut pairs = Vec::new();
    let mut exemplar_bufs = Vec::new();
    let (mut start, mut time, mut count, mut sum, mut flags, mut min, mut max) = (0u64, 0u64, 0u64, 0.0, 0u32, 0.0, 0.0);
    let (mut scale, mut zero_count) = (0i32, 0u64);
    let (mut positive, mut negative) = (Chunks::default(), Chunks::default());
    pb::each(buf, 5, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => pairs.push(b),
            (2, Value::I64(x)) => start = x,
            (3, Value::I64(x)) => time = x,
            (4, Value::I64(x)) => count = x,
            (5, Value::I64(x)) => sum = f64::from_bits(x),
            (6, Value::Varint(x)) => {
                let z = x as u32;
                scale = ((z >> 1) as i32) ^ -((z & 1) as i32);
            }
            (7, Value::I64(x)) => zero_count = x,
            (8, Value::Len(b)) => positive.push(b),
            (9, Value::Len(b)) => negative.push(b),
            (10, Value::Varint(x)) => flags = x as u32,
            (11, Value::Len(b)) => exemplar_bufs.push(b),
            (12, Value::I64(x)) => min = f64::from_bits(x),
            (13, Value::I64(x)) => max = f64::from_bits(x),
            _ => {}
        }
        Ok(())
    })?;
    let attrs = values::attributes(&pairs, 6)?;
    let exemplars = exemplar_bufs.iter().map(|b| exemplar(b, 6)).collect::<R<Vec<_>>>()?;
    let (pos_offset, pos_counts) = buckets(&positive, 6)?;
    let (neg_offset, neg_counts) = buckets(&negative, 6)?;
    push_common(cols, common, &attrs, start, time, flags);
    cols[15].push_u64(count);
    cols[16].push_f64(sum);
    cols[17].push_i32(scale);
    cols[18].push_u64(zero_count);
    cols[19].push_i32(pos_offset);
    for b in &pos_counts {
        cols[20].inner().push_u64(*b);
    }
    cols[20].end_row();
    cols[21].push_i32(neg_offset);
    for b in &neg_counts {
        cols[22].inner().push_u64(*b);
    }
    cols[22].end_row();
    cols[23].push_f64(min);
    cols[24].push_f64(max);
    cols[25].push_i32(temporality);
    push_exemplars(cols, 26, &exemplars);
    Ok(())
}

fn summary_point(buf: &[u8], common: &Common<'_, '_>, cols: &mut [Col]) -> R<()> {
    let mut pairs = Vec::new();
    let mut quantiles = Vec::new();
    let (mut start, mut time, mut count, mut sum, mut flags) = (0u64, 0u64, 0u64, 0.0, 0u32);
    pb::each(buf, 5, |field, v| {
        match (field, v) {
            (7, Value::Len(b)) => pairs.push(b),
            (2, Value::I64(x)) => start = x,
            (3, Value::I64(x)) => time = x,
            (4, Value::I64(x)) => count = x,
            (5, Value::I64(x)) => sum = f64::from_bits(x),
            (6, Value::Len(b)) => quantiles.push(b),
            (8, Value::Varint(x)) => flags = x as u32,
            _ => {}
        }
        Ok(())
    })?;
    let attrs = values::attributes(&pairs, 6)?;
    push_common(cols, common, &attrs, start, time, flags);
    cols[15].push_u64(count);
    cols[16].push_f64(sum);
    for q in &quantiles {
        let (mut quantile, mut value) = (0.0f64, 0.0f64);
        pb::each(q, 6, |field, v| {
            match (field, v) {
                (1, Value::I64(x)) => quantile = f64::from_bits(x),
                (2, Value::I64(x)) => value = f64::from_bits(x),
                _ => {}
            }
            Ok(())
        })?;
        cols[17].inner().push_f64(quantile);
        cols[18].inner().push_f64(value);
    }
    cols[17].end_row();
    cols[18].end_row();
    Ok(())
}

// -- RED points -----------------------------------------------------------------------------------

pub const CALLS: &str = "traces.span.metrics.calls";
pub const DURATION: &str = "traces.span.metrics.duration";
const SCOPE_NAME: &str = "maple.red";
const DELTA: i32 = 1;

/// The RED delta points of a request's series: (otel_metrics_histogram, otel_metrics_sum) columns.
pub fn red_tables(series: &[Series], received_ns: u64, dimensions: &[(String, Option<String>)], buckets_ms: &[f64])
                  -> (Columns, Columns) {
    let mut sums = Columns::new(&spec(SUM));
    let mut hists = Columns::new(&spec(HISTOGRAM));
    let empty = Attrs::new();
    for s in series {
        let mut attrs = Attrs::new();
        attrs.set(Cow::Borrowed("service.name"), Cow::Borrowed(s.service.as_str()));
        attrs.set(Cow::Borrowed("span.name"), Cow::Borrowed(s.name.as_str()));
        attrs.set(Cow::Borrowed("span.kind"), Cow::Borrowed(KIND_NAMES[s.kind]));
        attrs.set(Cow::Borrowed("status.code"), Cow::Borrowed(STATUS_NAMES[s.status]));
        let _ = (SPAN_KINDS, STATUS_CODES);
        for ((name, _), value) in dimensions.iter().zip(&s.extra) {
            if let Some(value) = value {
                attrs.set(Cow::Borrowed(name.as_str()), Cow::Borrowed(value.as_str()));
            }
        }
        let mut resource = Attrs::new();
        resource.set(Cow::Borrowed("service.name"), Cow::Borrowed(s.service.as_str()));
        let start = match s.start_ns {
            Some(0) | None => received_ns,
            Some(v) => v.min(received_ns),
        };
        let common = |unit: &'static str, name: &'static str| Common {
            resource: &resource,
            resource_url: "",
            scope_name: SCOPE_NAME,
            scope_version: "",
            scope_attrs: &empty,
            dropped: 0,
            scope_url: "",
            service: s.service.as_str(),
            name,
            description: "",
            unit,
        };
        let c = &mut sums.cols;
        push_common(c, &common("", CALLS), &attrs, start, received_ns, 0);
        c[15].push_f64(s.calls as f64);
        c[16].push_i32(DELTA);
        c[17].push_u8(1);
        push_exemplars(c, 18, &[]);
        let c = &mut hists.cols;
        push_common(c, &common("ms", DURATION), &attrs, start, received_ns, 0);
        c[15].push_u64(s.calls);
        c[16].push_f64(s.total_ms);
        for n in &s.counts {
            c[17].inner().push_u64(*n);
        }
        c[17].end_row();
        for b in buckets_ms {
            c[18].inner().push_f64(*b);
        }
        c[18].end_row();
        c[19].push_f64(s.low_ms);
        c[20].push_f64(s.high_ms);
        c[21].push_i32(DELTA);
        push_exemplars(c, 22, &[]);
    }
    (hists, sums)
}
