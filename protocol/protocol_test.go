package protocol

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"
	"time"
)

var samples = []Message{
	Hello{Version: Version, Instance: "default"},
	Hello{Version: Version, Instance: "default", AppOnly: true},
	Welcome{Version: Version, Capacity: 8},
	Welcome{Version: Version, Capacity: 8, App: []byte(`{"laravel":"8.83.26"}`)},
	Capacity{Capacity: 0},
	Job{ID: 1, Queue: "default", Payload: []byte(`{"uuid":"u","attempts":0}`)},
	Job{ID: 1 << 40, Queue: "{high}", Payload: []byte{}},
	Job{ID: 7, Queue: "default", Payload: []byte(`{}`), Row: &Row{ID: 12, Attempts: 2, ReservedAt: 1700000000, AvailableAt: -1, CreatedAt: 1699999000}},
	Job{ID: 8, Queue: "default", Payload: []byte(`{}`), SQS: &SQSMessage{ID: "5fea7756-0ea4", Receipt: "AQEB…", Receives: 3, QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/default"}},
	Outcome{ID: 7, Kind: Delete, Result: "done", Duration: 1500 * time.Microsecond, Memory: 40 << 20},
	Outcome{ID: 8, Kind: Release, ReleaseAt: 1795757500, Result: "released", Reason: "RuntimeException: boom"},
	Outcome{ID: 9, Kind: Keep, Failed: true, Failure: FailCrash, Result: "crashed", Reason: "exit code 3", Duration: -1},
	Outcome{ID: 13, Kind: GiveBack, Result: "interrupted"},
	Outcome{ID: 10, Kind: Delete, Failed: true, Failure: FailOOM, Result: "oom", Strategy: "isolated (memory 64M)", Scope: "/kqueue-default/job-10", CPU: 250 * time.Millisecond},
	Started{ID: 11},
	Running{ID: 12},
	Pool{},
	Pool{
		Workers:  []PoolWorker{{PID: 4242, Busy: true, Jobs: 17, RSS: 38 << 20, Age: 90 * time.Second}, {PID: 4243}},
		Recycles: []Recycle{{Reason: "max_jobs", Count: 3}, {Reason: "reload", Count: 2}},
		Scale:    Scale{Min: 1, Max: 4, Target: 3, Decision: "grew to 3: jobs on default wait 2.1s (target 1s)", Ups: 2},
	},
	Demand{},
	Demand{Queue: "high", Wait: 2500 * time.Millisecond, Target: time.Second},
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	ca, cb := NewConn(a), NewConn(b)
	go func() {
		ca.SendBatch(samples[:4])
		for _, m := range samples[4:] {
			ca.Send(m)
		}
		ca.Close()
	}()
	for _, want := range samples {
		got, err := cb.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if j, ok := got.(Job); ok {
			j.Payload = append([]byte{}, j.Payload...)
			if len(j.Payload) == 0 {
				j.Payload = want.(Job).Payload
			}
			got = j
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}
	}
	if _, err := cb.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

// A Hello or Welcome of version 5, without the fields that came after it,
// still reads: the version mismatch is then said as such.
func TestDecodeEarlierHandshake(t *testing.T) {
	t.Parallel()
	for _, frame := range [][]byte{
		{TypeHello, 5, 1, 'd'},
		{TypeWelcome, 5, 8},
	} {
		m, err := Decode(frame)
		if err != nil {
			t.Fatalf("Decode(%v): %v", frame, err)
		}
		if v := reflect.ValueOf(m).FieldByName("Version").Uint(); v != 5 {
			t.Errorf("Decode(%v) = %+v, want version 5", frame, m)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, frame := range [][]byte{
		{},
		{99},
		{TypeJob},
		{TypeJob, 1, 7, 'd'},
		{TypeOutcome, 1, 9, 0, 0},
		append(Hello{Version: 1}.AppendBody([]byte{TypeHello}), 0),
	} {
		if _, err := Decode(frame); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%v) = %v, want ErrMalformed", frame, err)
		}
	}
}

func TestRecvRejectsOversizedFrame(t *testing.T) {
	t.Parallel()
	c := NewConn(rwc{bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, TypeJob})})
	if _, err := c.Recv(); !errors.Is(err, ErrMalformed) {
		t.Errorf("got %v, want ErrMalformed", err)
	}
}

type rwc struct{ io.Reader }

func (rwc) Write(p []byte) (int, error) { return len(p), nil }
func (rwc) Close() error                { return nil }

func FuzzDecode(f *testing.F) {
	for _, m := range samples {
		f.Add(m.AppendBody([]byte{m.Type()}))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes.
		again := m.AppendBody([]byte{m.Type()})
		if !bytes.Equal(again, frame) {
			m2, err := Decode(again)
			if err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("re-encoding %#v changed it", m)
			}
		}
	})
}

func BenchmarkJobFrame(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 600)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = Job{ID: 42, Queue: "default", Payload: payload}.AppendBody(buf[:0])
		if _, err := Decode(append([]byte{TypeJob}, buf...)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOutcomeBatch(b *testing.B) {
	batch := make([]Message, 64)
	for i := range batch {
		batch[i] = Outcome{ID: uint64(i), Kind: Delete, Result: "done", Duration: time.Millisecond, Memory: 40 << 20, Strategy: "inline"}
	}
	a, c := net.Pipe()
	ca, cb := NewConn(a), NewConn(c)
	go func() {
		for {
			if _, err := cb.Recv(); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if err := ca.SendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/outcome")
	ca.Close()
}
