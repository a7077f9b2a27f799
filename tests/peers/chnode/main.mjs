// chnode drives a ClickHouse HTTP endpoint with @clickhouse/client, the Node client inside HyperDX.
//
// It pings, creates a table with one column of every type Maple's tables use, inserts rows in several
// JSONEachRow batches with gzip request and response compression, reads them back and compares every
// value, uses query parameters and a session (a temporary table lives only in it), and checks that a
// failing query surfaces ClickHouse's error code. One JSON line on stdout; exit 1 on any mismatch.
//
//   node main.mjs --url http://127.0.0.1:8123 --user default --password '' --database default --table t
import { ClickHouseLogLevel, createClient } from '@clickhouse/client'
import { randomUUID } from 'node:crypto'

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, i, all) => {
  if (arg.startsWith('--')) pairs.push([arg.slice(2), all[i + 1] ?? ''])
  return pairs
}, []))
const table = args.table ?? 'maple_chnode'
const rows = Number(args.rows ?? 20000)
const batches = Number(args.batches ?? 3)

function fail (message) {
  process.stderr.write(`chnode: ${message}\n`)
  process.exit(1)
}

// The column types of Maple's tables (maple/schema.py); the Python test checks this covers them all.
const columns = [
  ['Timestamp', 'DateTime64(9)'], ['TimestampTime', 'DateTime'], ['Str', 'String'],
  ['Lc', 'LowCardinality(String)'], ['U8', 'UInt8'], ['U32', 'UInt32'], ['U64', 'UInt64'], ['I32', 'Int32'],
  ['F64', 'Float64'], ['B', 'Bool'], ['Attrs', 'Map(LowCardinality(String), String)'],
  ['Counts', 'Array(UInt64)'], ['Bounds', 'Array(Float64)'], ['Strs', 'Array(String)'],
  ['Times', 'Array(DateTime64(9))'], ['Lcs', 'Array(LowCardinality(String))'],
  ['Maps', 'Array(Map(LowCardinality(String), String))'], ['Start', 'SimpleAggregateFunction(min, DateTime)'],
  ['End', 'SimpleAggregateFunction(max, DateTime)']
]

function pad (n, width) { return String(n).padStart(width, '0') }
function time (ms, ns) {
  const d = new Date(Date.UTC(2026, 10, 28, 12, 0, 0) + ms)
  const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)} ` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}`
  return ns === undefined ? base : `${base}.${pad(d.getUTCMilliseconds() * 1e6 + ns, 9)}`
}

function makeRow (i) {
  const extra = Array.from({ length: i % 3 }, (_, j) => j)
  return {
    Timestamp: time(i, i % 1000),
    TimestampTime: time(i),
    Str: `body ${i} with ünïcode and "quotes"\n`,
    Lc: `service-${i % 7}`,
    U8: i % 256,
    U32: i * 7,
    U64: String(BigInt(i) * 1000000007n),
    I32: -i,
    F64: i / 3,
    B: i % 2 === 0,
    Attrs: { 'k8s.pod.name': `pod-${i % 5}`, i: String(i) },
    Counts: [String(i), '2', '3'],
    Bounds: [0.5, i],
    Strs: extra.map(j => `s${j}`),
    Times: extra.map(j => time(i, i % 1000 + j * 1000)),
    Lcs: extra.map(j => `event-${j}`),
    Maps: extra.map(j => ({ j: String(j) })),
    Start: time(i),
    End: time(i + 1000)
  }
}

const client = createClient({
  url: args.url ?? 'http://127.0.0.1:8123',
  username: args.user ?? 'default',
  password: args.password ?? '',
  database: args.database ?? 'default',
  compression: { request: true, response: true },
  request_timeout: 120000,
  log: { level: ClickHouseLogLevel.OFF },  // expected errors below would be logged as errors
  // 64-bit integers as JSON strings whatever the server's default (it changed across releases), and
  // progress headers as HyperDX asks for them on long queries.
  clickhouse_settings: {
    output_format_json_quote_64bit_integers: 1,
    send_progress_in_http_headers: 1,
    http_headers_progress_interval_ms: '110000'
  }
})
const report = { types: columns.map(c => c[1]), inserted: 0, read: 0 }
try {
  const ping = await client.ping()
  if (!ping.success) fail(`ping: ${ping.error}`)
  await client.command({ query: `DROP TABLE IF EXISTS ${table}` })
  await client.command({
    query: `CREATE TABLE ${table} (${columns.map(([n, t]) => `\`${n}\` ${t}`).join(', ')}, ` +
      "`PodName` LowCardinality(String) MATERIALIZED Attrs['k8s.pod.name']) ENGINE = MergeTree ORDER BY Timestamp"
  })
  const per = Math.ceil(rows / batches)
  for (let b = 0; b < batches; b++) {
    const values = []
    for (let i = b * per; i < Math.min((b + 1) * per, rows); i++) values.push(makeRow(i))
    await client.insert({ table, values, format: 'JSONEachRow' })
    report.inserted += values.length
  }
  const result = await client.query({
    query: `SELECT ${columns.map(c => `\`${c[0]}\``).join(', ')} FROM ${table} ORDER BY Timestamp`,
    format: 'JSONEachRow'
  })
  for await (const chunk of result.stream()) {
    for (const line of chunk) {
      const got = line.json()
      const want = makeRow(report.read)
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        fail(`row ${report.read} differs:\n got  ${JSON.stringify(got)}\n want ${JSON.stringify(want)}`)
      }
      report.read++
    }
  }
  if (report.read !== rows) fail(`read ${report.read} rows back, inserted ${rows}`)

  const counted = await client.query({
    query: `SELECT count() AS n FROM ${table} WHERE PodName = {pod:String} AND Lc = {svc:String}`,
    query_params: { pod: 'pod-1', svc: 'service-1' },
    format: 'JSONEachRow'
  })
  report.param_count = Number((await counted.json())[0].n)

  const session = randomUUID()
  await client.command({ query: 'CREATE TEMPORARY TABLE maple_tmp (x UInt8)', session_id: session })
  await client.command({ query: 'INSERT INTO maple_tmp VALUES (7)', session_id: session })
  const tmp = await client.query({ query: 'SELECT x FROM maple_tmp', format: 'JSONEachRow', session_id: session })
  report.session_value = (await tmp.json())[0].x
  try {
    await client.query({ query: 'SELECT x FROM maple_tmp', format: 'JSONEachRow' })
    fail('a temporary table was visible outside its session')
  } catch (err) {
    report.outside_session_code = err.code
  }

  try {
    await client.query({ query: 'SELECT * FROM maple_no_such_table', format: 'JSONEachRow' })
    fail('a query on a missing table succeeded')
  } catch (err) {
    report.error_code = err.code
  }
  await client.command({ query: `DROP TABLE ${table}` })
} catch (err) {
  fail(`${err.stack ?? err}`)
} finally {
  await client.close()
}
process.stdout.write(JSON.stringify(report) + '\n')
