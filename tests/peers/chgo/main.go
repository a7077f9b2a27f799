// chgo drives a ClickHouse HTTP endpoint with clickhouse-go v2, the driver inside Grafana's ClickHouse
// data source, the OpenTelemetry Collector's ClickHouse exporter and Jaeger's ClickHouse storage.
//
// It connects over HTTP (the server hello, with compress=1 for lz4/zstd), creates a table with one
// column of every type Maple's tables use, inserts rows in several batches, reads them back and compares
// every value, runs a bound-parameter query, and checks that a failing query surfaces ClickHouse's
// exception code. It prints one JSON line with what it saw and exits non-zero on any mismatch.
//
//	chgo -addr 127.0.0.1:8123 -database default -user default -password '' -compress lz4 -table t
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// The column types of Maple's tables (maple/schema.py), one column each. The Python test checks that
// this list covers every type its tables use.
var columns = []struct{ name, typ string }{
	{"Timestamp", "DateTime64(9)"},
	{"TimestampTime", "DateTime"},
	{"Str", "String"},
	{"Lc", "LowCardinality(String)"},
	{"U8", "UInt8"},
	{"U32", "UInt32"},
	{"U64", "UInt64"},
	{"I32", "Int32"},
	{"F64", "Float64"},
	{"B", "Bool"},
	{"Attrs", "Map(LowCardinality(String), String)"},
	{"Counts", "Array(UInt64)"},
	{"Bounds", "Array(Float64)"},
	{"Strs", "Array(String)"},
	{"Times", "Array(DateTime64(9))"},
	{"Lcs", "Array(LowCardinality(String))"},
	{"Maps", "Array(Map(LowCardinality(String), String))"},
	{"Start", "SimpleAggregateFunction(min, DateTime)"},
	{"End", "SimpleAggregateFunction(max, DateTime)"},
}

type row struct {
	Timestamp     time.Time
	TimestampTime time.Time
	Str           string
	Lc            string
	U8            uint8
	U32           uint32
	U64           uint64
	I32           int32
	F64           float64
	B             bool
	Attrs         map[string]string
	Counts        []uint64
	Bounds        []float64
	Strs          []string
	Times         []time.Time
	Lcs           []string
	Maps          []map[string]string
	Start         time.Time
	End           time.Time
}

func makeRow(i int) row {
	base := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ts := base.Add(time.Duration(i)*time.Millisecond + time.Duration(i%1000)*time.Nanosecond)
	r := row{
		Timestamp:     ts,
		TimestampTime: ts.Truncate(time.Second),
		Str:           fmt.Sprintf("body %d with ünïcode and \"quotes\"\n", i),
		Lc:            fmt.Sprintf("service-%d", i%7),
		U8:            uint8(i % 256),
		U32:           uint32(i * 7),
		U64:           uint64(i) * 1_000_000_007,
		I32:           int32(-i),
		F64:           float64(i) / 3,
		B:             i%2 == 0,
		Attrs:         map[string]string{"k8s.pod.name": fmt.Sprintf("pod-%d", i%5), "i": fmt.Sprint(i)},
		Counts:        []uint64{uint64(i), 2, 3},
		Bounds:        []float64{0.5, float64(i)},
		Strs:          []string{},
		Times:         []time.Time{},
		Lcs:           []string{},
		Maps:          []map[string]string{},
		Start:         ts.Truncate(time.Second),
		End:           ts.Truncate(time.Second).Add(time.Second),
	}
	for j := 0; j < i%3; j++ {
		r.Strs = append(r.Strs, fmt.Sprintf("s%d", j))
		r.Times = append(r.Times, ts.Add(time.Duration(j)*time.Microsecond))
		r.Lcs = append(r.Lcs, fmt.Sprintf("event-%d", j))
		r.Maps = append(r.Maps, map[string]string{"j": fmt.Sprint(j)})
	}
	return r
}

func (r row) values() []any {
	v := reflect.ValueOf(r)
	out := make([]any, v.NumField())
	for i := range out {
		out[i] = v.Field(i).Interface()
	}
	return out
}

func (r *row) pointers() []any {
	v := reflect.ValueOf(r).Elem()
	out := make([]any, v.NumField())
	for i := range out {
		out[i] = v.Field(i).Addr().Interface()
	}
	return out
}

type report struct {
	Server    string   `json:"server"`
	Revision  uint64   `json:"revision"`
	Types     []string `json:"types"`
	Inserted  int      `json:"inserted"`
	Read      int      `json:"read"`
	Param     uint64   `json:"param_count"`
	ErrorCode int32    `json:"error_code"`
	Compress  string   `json:"compress"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chgo: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8123", "host:port of the ClickHouse HTTP interface")
	database := flag.String("database", "default", "database to create the table in")
	user := flag.String("user", "default", "user")
	password := flag.String("password", "", "password")
	compress := flag.String("compress", "lz4", "lz4, zstd, gzip or none")
	table := flag.String("table", "maple_chgo", "table to create (dropped first)")
	rows := flag.Int("rows", 30000, "rows to insert")
	batches := flag.Int("batches", 3, "batches to insert them in")
	flag.Parse()

	methods := map[string]clickhouse.CompressionMethod{
		"lz4": clickhouse.CompressionLZ4, "zstd": clickhouse.CompressionZSTD,
		"gzip": clickhouse.CompressionGZIP, "none": clickhouse.CompressionNone,
	}
	method, ok := methods[*compress]
	if !ok {
		fail("unknown -compress %q", *compress)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:    clickhouse.HTTP,
		Addr:        []string{*addr},
		Auth:        clickhouse.Auth{Database: *database, Username: *user, Password: *password},
		Compression: &clickhouse.Compression{Method: method},
		DialTimeout: 10 * time.Second,
		ReadTimeout: 120 * time.Second,
	})
	if err != nil {
		fail("open: %v", err)
	}
	defer conn.Close()
	ctx := context.Background()

	version, err := conn.ServerVersion()
	if err != nil {
		fail("server hello: %v", err)
	}
	out := report{Server: version.String(), Revision: version.Revision, Compress: *compress}

	if err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+*table); err != nil {
		fail("drop: %v", err)
	}
	ddl := "CREATE TABLE " + *table + " ("
	for i, c := range columns {
		if i > 0 {
			ddl += ", "
		}
		ddl += "`" + c.name + "` " + c.typ
		out.Types = append(out.Types, c.typ)
	}
	ddl += ", `PodName` LowCardinality(String) MATERIALIZED Attrs['k8s.pod.name']) ENGINE = MergeTree ORDER BY Timestamp"
	if err := conn.Exec(ctx, ddl); err != nil {
		fail("create: %v", err)
	}

	per := (*rows + *batches - 1) / *batches
	for b := 0; b < *batches; b++ {
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+*table)
		if err != nil {
			fail("prepare batch %d: %v", b, err)
		}
		for i := b * per; i < (b+1)*per && i < *rows; i++ {
			if err := batch.Append(makeRow(i).values()...); err != nil {
				fail("append row %d: %v", i, err)
			}
		}
		n := batch.Rows()
		if err := batch.Send(); err != nil {
			fail("send batch %d: %v", b, err)
		}
		out.Inserted += n
	}

	names := ""
	for i, c := range columns {
		if i > 0 {
			names += ", "
		}
		names += "`" + c.name + "`"
	}
	result, err := conn.Query(ctx, "SELECT "+names+" FROM "+*table+" ORDER BY Timestamp")
	if err != nil {
		fail("select: %v", err)
	}
	for result.Next() {
		var got row
		if err := result.Scan(got.pointers()...); err != nil {
			fail("scan row %d: %v", out.Read, err)
		}
		want := makeRow(out.Read)
		for _, t := range []*time.Time{&got.Timestamp, &got.TimestampTime, &got.Start, &got.End} {
			*t = t.UTC()
		}
		for i := range got.Times {
			got.Times[i] = got.Times[i].UTC()
		}
		if !reflect.DeepEqual(got, want) {
			fail("row %d differs:\n got  %#v\n want %#v", out.Read, got, want)
		}
		out.Read++
	}
	if err := result.Err(); err != nil {
		fail("reading rows: %v", err)
	}
	result.Close()
	if out.Read != *rows {
		fail("read %d rows back, inserted %d", out.Read, *rows)
	}

	if err := conn.QueryRow(ctx, "SELECT count() FROM "+*table+" WHERE PodName = {pod:String} AND Lc = {svc:String}",
		clickhouse.Named("pod", "pod-1"), clickhouse.Named("svc", "service-1")).Scan(&out.Param); err != nil {
		fail("query with parameters: %v", err)
	}

	var n uint8
	err = conn.QueryRow(ctx, "SELECT throwIf(number = 3, 'maple chgo check') FROM numbers(10)").Scan(&n)
	var exception *clickhouse.Exception
	if !errors.As(err, &exception) {
		fail("a failing query returned %v, not a ClickHouse exception", err)
	}
	out.ErrorCode = exception.Code

	if err := conn.Exec(ctx, "DROP TABLE "+*table); err != nil {
		fail("drop: %v", err)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}
