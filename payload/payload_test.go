package payload

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// laravel8 is a payload as Laravel 8.83 writes it; reserved is the copy
// Redis' cjson makes of it in the pop script (other order, attempts+1).
const laravel8 = `{"uuid":"fbcf9a2e-4d2b-4c36-9ad0-3f0c2c7d9e11","displayName":"App\\Jobs\\Demo","job":"Illuminate\\Queue\\CallQueuedHandler@call","maxTries":3,"maxExceptions":null,"failOnTimeout":false,"backoff":"5,10","timeout":30,"retryUntil":null,"data":{"commandName":"App\\Jobs\\Demo","command":"O:13:\"App\\Jobs\\Demo\":0:{}"},"id":"DtR6rTQtUrJeDpj0ruqHyCecOQSIiun9","attempts":0}`

const reserved = `{"uuid":"fbcf9a2e-4d2b-4c36-9ad0-3f0c2c7d9e11","timeout":30,"id":"DtR6rTQtUrJeDpj0ruqHyCecOQSIiun9","backoff":"5,10","displayName":"App\\Jobs\\Demo","maxTries":3,"failOnTimeout":false,"data":{"command":"O:13:\"App\\Jobs\\Demo\":0:{}","commandName":"App\\Jobs\\Demo"},"job":"Illuminate\\Queue\\CallQueuedHandler@call","attempts":1}`

func TestParse(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{laravel8, reserved} {
		p, err := Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if p.UUID != "fbcf9a2e-4d2b-4c36-9ad0-3f0c2c7d9e11" || p.Name() != `App\Jobs\Demo` || p.CommandName != `App\Jobs\Demo` {
			t.Errorf("identity: %+v", p)
		}
		if p.MaxTries == nil || *p.MaxTries != 3 || p.MaxExceptions != nil {
			t.Errorf("tries: %+v", p)
		}
		if p.Timeout == nil || *p.Timeout != 30*time.Second || p.Backoff != "5,10" || p.RetryUntil != nil || p.FailOnTimeout {
			t.Errorf("timing: %+v", p)
		}
	}
}

func TestParseVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw string
		check     func(*Payload) bool
	}{
		{"string job without displayName", `{"uuid":"u","job":"App\\Handler@run","data":[],"attempts":2}`,
			func(p *Payload) bool { return p.Name() == `App\Handler@run` && p.Attempts == 2 }},
		{"cjson {} for []", `{"uuid":"u","job":"j","data":{},"attempts":0}`,
			func(p *Payload) bool { return p.CommandName == "" }},
		{"cjson float attempts", `{"uuid":"u","job":"j","data":{},"attempts":3.0}`,
			func(p *Payload) bool { return p.Attempts == 3 }},
		{"cjson exponent", `{"uuid":"u","job":"j","data":{},"attempts":0,"retryUntil":1.7957575e+09}`,
			func(p *Payload) bool { return p.RetryUntil != nil && *p.RetryUntil == 1795757500 }},
		{"numeric backoff", `{"uuid":"u","job":"j","data":{},"attempts":0,"backoff":7}`,
			func(p *Payload) bool { return p.Backoff == "7" }},
		{"failOnTimeout", `{"uuid":"u","job":"j","data":{},"attempts":0,"failOnTimeout":true,"timeout":0}`,
			func(p *Payload) bool { return p.FailOnTimeout && p.Timeout != nil && *p.Timeout == 0 }},
		{"laravel 13 extra keys", `{"uuid":"u","job":"j","data":{"commandName":"C","command":"x","batchId":null},"createdAt":1795757500,"delay":null,"deleteWhenMissingModels":true,"attempts":0}`,
			func(p *Payload) bool { return p.CommandName == "C" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(p) {
				t.Errorf("%+v", p)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, want string }{
		{`not json`, "malformed job payload: not a JSON object"},
		{`[1,2]`, "not a JSON object"},
		{`{"uuid":"u","data":{},"attempts":0}`, `no "job" field`},
		{`{"job":"j","data":{},"attempts":0}`, `no "uuid" field`},
		{`{"uuid":"u","job":"j","attempts":0}`, `no "data" field`},
		{`{"uuid":"u","job":"j","data":{}}`, `no numeric "attempts" field`},
		{`{"uuid":"u","job":"j","data":{},"attempts":"1"}`, `"attempts" is "1", want an integer`},
		{`{"uuid":"u","job":"j","data":{},"attempts":1.5}`, `"attempts" is 1.5, want an integer`},
		{`{"uuid":"u","job":"j","data":{},"attempts":0} {}`, "trailing data"},
	} {
		_, err := Parse([]byte(tc.raw))
		if err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%s) = %v, want ErrMalformed", tc.raw, err)
			continue
		}
		if !contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %q, want it to contain %q", tc.raw, err, tc.want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func FuzzParse(f *testing.F) {
	f.Add([]byte(laravel8))
	f.Add([]byte(reserved))
	f.Add([]byte(`{"uuid":"u","job":"j","data":{},"attempts":1e300}`))
	f.Add([]byte(`{"uuid":"u","job":"j","data":{"command":"O:1:\"X\":2:{s:3:\"cpu\";i:2;s:8:\"isolated\";b:1;}"},"attempts":0}`))
	f.Add([]byte(`{"uuid":"u","job":"j","data":{"command":"O:1:\"X\":1:{s:9:\"maxMemory\";i:64;}"},"attempts":0}`))
	f.Add([]byte(`{"uuid":"u","job":"j","data":{"command":"O:1:\"X\":1:{s:6:\"\u0000*\u0000cpu\";i:2;}"},"attempts":0}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := Parse(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p.UUID == "" || p.Job == "" {
			t.Fatalf("accepted a payload without uuid or job: %q", raw)
		}
		anyOne := false
		for _, s := range mayContainProbes {
			if strings.Contains(p.Command(), s) && !p.CommandMayContain(NewProbe(s)) {
				t.Fatalf("the command of %q contains %q, but CommandMayContain says it cannot", raw, s)
			}
			anyOne = anyOne || p.CommandMayContain(NewProbe(s))
		}
		// Many at once say what each says.
		if all := p.CommandMayContain(NewProbe(mayContainProbes...)); all != anyOne {
			t.Fatalf("CommandMayContain of %q: %v for all the probes at once, %v for some one of them", raw, all, anyOne)
		}
		hints := []string{`isolated";`, `maxMemory";`, `cpu";`}
		if all, some := p.CommandMayContain(NewProbe(hints...)), slices.ContainsFunc(hints, func(h string) bool { return p.CommandMayContain(NewProbe(h)) }); all != some {
			t.Fatalf("CommandMayContain of %q: %v for the hint names at once, %v for some one of them", raw, all, some)
		}
	})
}

var mayContainProbes = []string{`isolated";`, `cpu";`, `"`, `\`, `a"b\c`, `O:`, `s:3:"cpu";i:2;`}

// CommandMayContain rules a string out only when the command cannot hold
// it, however the JSON writes its characters.
func TestCommandMayContain(t *testing.T) {
	for _, c := range []struct {
		command string // data.command as JSON
		s       string
		may     bool
	}{
		{`"O:8:\"App\\Job\":1:{s:3:\"cpu\";i:2;}"`, `cpu";`, true},
		{`"O:8:\"App\\Job\":1:{s:3:\"cpu\";i:2;}"`, `isolated";`, false},
		{`"O:8:\"App\\Job\":1:{s:3:\"cp\u0075\";i:2;}"`, `cpu";`, true}, // \u spells one of its characters
		// A protected property's name begins with NUL * NUL, which JSON
		// writes \u0000: no character of the names looked for.
		{`"O:8:\"App\\Job\":1:{s:6:\"\u0000*\u0000cpu\";i:2;}"`, `cpu";`, true},
		{`"O:8:\"App\\Job\":1:{s:6:\"\u0000*\u0000cpu\";i:2;}"`, `isolated";`, false},
		{`"O:8:\"App\\Job\":1:{s:6:\"\u0000*\u0000cpu\";i:2;}"`, "*\x00cpu", true}, // not printable: cannot tell
		{`"a\\u0041"`, `A`, false}, // \\ then u0041, no escape
		{`"a\u0041"`, `A`, true},
		{`"O:8:\"App\\Job\":1:{s:3:\"cpu\";i:2;}"`, `\Job"`, true},
		{`"plain"`, `a/b`, true}, // '/' may be written \/: cannot tell
		{`"plain"`, `lain`, true},
		{`"plain"`, `plain"`, false}, // the closing quote is not the command's
	} {
		p, err := Parse([]byte(`{"uuid":"u","job":"j","data":{"command":` + c.command + `},"attempts":0}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.CommandMayContain(NewProbe(c.s)); got != c.may {
			t.Errorf("command %s: CommandMayContain(%q) = %v, want %v", c.command, c.s, got, c.may)
		}
		if strings.Contains(p.Command(), c.s) && !c.may {
			t.Errorf("command %s holds %q: the case is wrong", c.command, c.s)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	raw := []byte(laravel8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// referenceWire fills a wire with encoding/json: the scanner must accept
// exactly what it accepts and read the same members (exact keys, the last
// duplicate wins — a map decode does both).
func referenceWire(raw []byte) (*wire, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var w wire
	for k, v := range m {
		if f := w.field([]byte(k)); f != nil {
			*f = v
		}
	}
	return &w, nil
}

func FuzzScanMatchesEncodingJSON(f *testing.F) {
	f.Add([]byte(laravel8))
	f.Add([]byte(reserved))
	f.Add([]byte(`{"uuid":"a","uuid":"b","job":"j","data":{},"attempts":0}`))
	f.Add([]byte(`{"u\u0075id":"a","job":"j\"\\\/\b\f\n\r\t\ud83d\ude00","data":{"command":1},"attempts":1.0e0} `))
	f.Add([]byte(`{"uuid":"a","job":"j","data":[[[]]],"attempts":-0,"x":[1,-2.5e+3,true,false,null,{"a":{}}]}`))
	// data's members are read in the same pass: the last data wins, even
	// when it is not an object, and a key may be escaped.
	f.Add([]byte(`{"uuid":"a","job":"j","data":{"commandName":"A","command":"x"},"d\u0061ta":{"commandName":"B"},"attempts":0}`))
	f.Add([]byte(`{"uuid":"a","job":"j","data":{"commandName":"A","command":"x"},"data":null,"attempts":0}`))
	f.Add([]byte(`{"uuid":"a","job":"j","data":{"command":"x","command":1,"commandName":2},"x":{"commandName":"C"},"attempts":0}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !utf8.Valid(raw) {
			return // refused before either runs
		}
		got, err := Parse(raw)
		if errors.Is(err, errTooDeep) {
			return // encoding/json reads deeper
		}
		ref, rerr := referenceWire(raw)
		if (err == nil) != (rerr == nil) && rerr != nil {
			t.Fatalf("Parse accepted %q, encoding/json did not: %v", raw, rerr)
		}
		if rerr != nil {
			return
		}
		want, werr := ref.payload()
		if (err == nil) != (werr == nil) {
			t.Fatalf("Parse(%q) error %v, reference %v", raw, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Parse(%q) = %+v, reference %+v", raw, got, want)
		}
	})
}

// The kqueue PHP library's mark is read where it stands, as a top-level
// key; the same text inside the serialized command or data, or a mark
// that is not true, is no mark.
func TestMarkedIsolated(t *testing.T) {
	t.Parallel()
	const job = `"uuid":"u","job":"Illuminate\\Queue\\CallQueuedHandler@call","attempts":0`
	for raw, want := range map[string]bool{
		`{` + job + `,"data":{},"kqueue":{"isolated":true}}`:                   true,
		`{"kqueue":{"other":1,"isolated":true},` + job + `,"data":{}}`:         true,
		`{` + job + `,"data":{},"kqueue":{"isolated":false}}`:                  false,
		`{` + job + `,"data":{},"kqueue":{"isolated":true,"isolated":false}}`:  false, // the last wins, as in PHP
		`{` + job + `,"data":{"command":"O:1:\"X\":1:{s:6:\"kqueue\";b:1;}"}}`: false,
		`{` + job + `,"displayName":"kqueue","data":{},"kqueue":null}`:         false,
		`{` + job + `,"data":{"kqueue":{"isolated":true}}}`:                    false,
	} {
		p, err := Parse([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if p.MarkedIsolated != want {
			t.Errorf("%s: marked %v, want %v", raw, p.MarkedIsolated, want)
		}
	}
}
