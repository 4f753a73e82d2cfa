package web

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// An encrypted command (ShouldBeEncrypted) never reaches a page: neither
// in a whole payload nor in one the history cut short.
func TestShownPayloadHidesEncryptedCommand(t *testing.T) {
	whole := `{"uuid":"u","displayName":"App\\Jobs\\Secret","tags":["user:1"],"data":{"commandName":"App\\Jobs\\Secret","command":"eyJpdiI6IlNlY3JldCJ9"}}`
	shown, tags := shownPayload(whole)
	if strings.Contains(shown, "eyJpdiI6") || !strings.Contains(shown, "(encrypted: hidden)") || len(tags) != 1 || tags[0] != "user:1" {
		t.Errorf("whole payload shown as:\n%s\ntags %v", shown, tags)
	}
	cut := whole[:len(whole)-10]
	if shown, _ := shownPayload(cut); strings.Contains(shown, "eyJpdiI6") || !strings.Contains(shown, "(encrypted: hidden)") {
		t.Errorf("cut payload shown as:\n%s", shown)
	}
	plain := `{"uuid":"u","data":{"command":"O:8:\"App\\Jobs\":0:{}"}}`
	if shown, _ := shownPayload(plain); !strings.Contains(shown, `O:8:`) {
		t.Errorf("a plain command is hidden:\n%s", shown)
	}
}

func TestAccess(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	os.WriteFile(file, []byte("# comment\n\noperator op-0123456789abcdef\nviewer vi-0123456789abcdef\n"), 0o600)
	tokens, err := ReadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"admin xx-0123456789abcdef\n", "operator short\n", "# nothing\n"} {
		os.WriteFile(file, []byte(bad), 0o600)
		if _, err := ReadTokens(file); err == nil {
			t.Errorf("tokens file %q accepted", bad)
		}
	}
	cases := []struct {
		name   string
		access Access
		header map[string]string
		want   Who
		ok     bool
	}{
		{"open, local", Access{LocalRole: Viewer}, nil, Who{"local", Viewer}, true},
		{"operator token", Access{Tokens: tokens}, map[string]string{"Authorization": "Bearer op-0123456789abcdef"}, Who{"operator@3", Operator}, true},
		{"viewer token", Access{Tokens: tokens}, map[string]string{"Authorization": "Bearer vi-0123456789abcdef"}, Who{"viewer@4", Viewer}, true},
		{"wrong token", Access{Tokens: tokens}, map[string]string{"Authorization": "Bearer op-0123456789abcdeX"}, Who{}, false},
		{"no token", Access{Tokens: tokens}, nil, Who{}, false},
		{"proxy operator", Access{UserHeader: "X-User", Operators: []string{"alice"}}, map[string]string{"X-User": "alice"}, Who{"alice", Operator}, true},
		{"proxy viewer", Access{UserHeader: "X-User", Operators: []string{"alice"}}, map[string]string{"X-User": "bob"}, Who{"bob", Viewer}, true},
		{"proxy, no user", Access{UserHeader: "X-User"}, nil, Who{}, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got, ok := c.access.who(r); got != c.want || ok != c.ok {
			t.Errorf("%s: %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
	// A CSRF token is the user's: another user's does not pass.
	secret := []byte("secret")
	if csrf(secret, Who{"alice", Operator}) == csrf(secret, Who{"bob", Operator}) {
		t.Error("two users share a CSRF token")
	}
}

func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		site, origin string
		ok           bool
	}{
		{"", "", true},
		{"same-origin", "http://console.example", true},
		{"cross-site", "http://evil.example", false},
		{"", "http://evil.example", false},
		{"", "https://console.example", true},
	} {
		r := httptest.NewRequest("POST", "http://console.example/restart", nil)
		if c.site != "" {
			r.Header.Set("Sec-Fetch-Site", c.site)
		}
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if got := sameOrigin(r); got != c.ok {
			t.Errorf("Sec-Fetch-Site %q, Origin %q: %v, want %v", c.site, c.origin, got, c.ok)
		}
	}
}

func TestQuantiles(t *testing.T) {
	h := make([]int64, len(poller.DurationBuckets)+1)
	h[poller.DurationBucket(3*time.Millisecond)] = 90
	h[poller.DurationBucket(300*time.Millisecond)] = 10
	if got := durationAt(h, .5); got != "≤ 5ms" {
		t.Errorf("p50 %s", got)
	}
	if got := durationAt(h, .95); got != "≤ 500ms" {
		t.Errorf("p95 %s", got)
	}
	if got := durationAt(make([]int64, 3), .5); got != "–" {
		t.Errorf("p50 of nothing: %s", got)
	}
	h[len(h)-1] = 1000
	if got := durationAt(h, .99); got != "> 5m0s" {
		t.Errorf("p99 over the last bucket: %s", got)
	}
}

// The job history's search: filters, words, and pages that go on where
// the last ended.
func TestHistorySearch(t *testing.T) {
	h := &history{keep: 1000}
	var ids []string
	for i := range 120 {
		// Entries of one run each, then (the Redis store's form now)
		// entries of three, each run's ID saying how many follow it.
		id := fmt.Sprintf("%d-%d", 1000+i/3, i%3)
		if i >= 60 {
			id = fmt.Sprintf("%d-0.%d", 2000+i/3, 2-i%3)
		}
		ids = append(ids, id)
		h.add(poller.Record{ID: id, UUID: "u" + string(rune('0'+i%10)),
			Name: []string{"App\\Jobs\\A", "App\\Jobs\\B"}[i%2], Queue: "default", Outcome: []string{"done", "failed"}[i%3/2],
			Tags: []string{"user:" + string(rune('0'+i%5))}})
	}
	all := h.search(Filter{})
	if all.Matched != 120 || len(all.Runs) != jobsPage || all.Older == "" {
		t.Fatalf("unfiltered: %d matched, %d shown, older %q", all.Matched, len(all.Runs), all.Older)
	}
	next := h.search(Filter{Before: all.Older})
	if len(next.Runs) != jobsPage || next.Runs[0].ID == all.Runs[jobsPage-1].ID {
		t.Errorf("the next page starts at %q, after %q", next.Runs[0].ID, all.Older)
	}
	var paged []string
	for f := (Filter{}); ; {
		page := h.search(f)
		for _, r := range page.Runs {
			paged = append(paged, r.ID)
		}
		if f.Before = page.Older; f.Before == "" {
			break
		}
	}
	slices.Reverse(paged)
	if !slices.Equal(paged, ids) {
		t.Errorf("page after page, newest first, the runs are %v; want %v", paged, ids)
	}
	b := h.search(Filter{Class: "App\\Jobs\\B", Tag: "user:1"})
	for _, r := range b.Runs {
		if r.Name != "App\\Jobs\\B" || r.Tags[0] != "user:1" {
			t.Errorf("filtered run %+v", r)
		}
	}
	if b.Matched != 12 {
		t.Errorf("class B, tag user:1: %d runs, want 12", b.Matched)
	}
	if w := h.search(Filter{Query: "jobs\\a FAILED"}); w.Matched == 0 || w.Matched >= 60 {
		t.Errorf("words: %d runs", w.Matched)
	}
}

// Where an action sends the user back, and where sign-in goes next: a
// path on this site, nothing else.
func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/failed?q=x":           "/failed?q=x",
		"/":                     "/",
		"":                      "/",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"https://evil.example/": "/",
		"javascript:alert(1)":   "/",
		"/%zz":                  "/",
		"/a\r\nLocation: x":     "/",
	} {
		if got := localPath(in).String(); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// Without sign-in, the console answers only under loopback names (DNS
// rebinding); a message in a page's address shows only if the console
// signed it.
func TestOpenConsoleAndMessages(t *testing.T) {
	for host, ok := range map[string]bool{"localhost:7380": true, "127.0.0.1:7380": true, "[::1]:7380": true, "127.0.0.1": true, "evil.example:7380": false, "10.0.0.1:7380": false} {
		if loopbackHost(host) != ok {
			t.Errorf("loopbackHost(%q) = %v", host, !ok)
		}
	}
	s, err := New(Config{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var v view
	s.fill(&v, url.Values{"said": {"3 failed jobs pushed back"}, "sig": {s.sign("3 failed jobs pushed back", "")}}, nil, nil)
	if v.Said != "3 failed jobs pushed back" {
		t.Errorf("a signed message is not shown: %+v", v)
	}
	v = view{}
	s.fill(&v, url.Values{"error": {"call 0800 now"}, "sig": {"forged"}}, nil, nil)
	if v.Error != "" || v.Said != "" {
		t.Errorf("a message the console did not sign is shown: %+v", v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "http://evil.example/", nil))
	if w.Code != 421 {
		t.Errorf("an open console under another name: %d, want 421", w.Code)
	}
}
