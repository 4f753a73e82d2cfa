package exec

import (
	"bytes"
	"encoding/json"
	"testing"
)

// A request's header decodes to the request, whichever way it was written;
// the plain run header is byte for byte what encoding/json writes.
func TestRequestHeader(t *testing.T) {
	for _, req := range []request{
		{Op: "run", Queue: "default", Len: 612},
		{Op: "run", Queue: "{emails}", Len: 0},
		{Op: "run", Queue: `we"ird\q`, Len: 1},
		{Op: "run", Queue: "ünïcode<&>", Len: 2},
		{Op: "run", Queue: "tab\there", Len: 3},
		{Op: "fail", Queue: "default", Len: 4, Kind: "timeout", Reason: "took \"too\" long"},
		{Op: "defaults", Class: `App\Jobs\Noop`},
	} {
		hdr := req.appendHeader(nil)
		var got request
		if err := json.Unmarshal(hdr, &got); err != nil || got != req {
			t.Errorf("%s decodes to %+v (%v), want %+v", hdr, got, err, req)
		}
		if want, _ := json.Marshal(req); plainJSON(req.Queue) && !bytes.Equal(hdr, want) {
			t.Errorf("header %s, encoding/json writes %s", hdr, want)
		}
	}
}
