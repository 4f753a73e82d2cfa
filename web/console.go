// Package web is kqueue's console: a web view of every instance sharing
// the queues (read from the store, where each instance publishes its
// state), the queues themselves, and Laravel's failed jobs (read and
// retried through the app itself), with the actions operators need.
// Pages are rendered on the server with html/template, so job data (a
// displayName, an exception) is escaped wherever it lands; a page keeps
// itself current over server-sent events, which carry the same rendering.
package web

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kqueue/kqueue/internal/cut"
	"github.com/kqueue/kqueue/poller"
	"golang.org/x/sync/singleflight"
)

//go:embed assets
var assets embed.FS

// Config configures a console.
type Config struct {
	// Name is the kqueue instance's config name, in titles.
	Name string
	// Connection is the app's queue connection: the one Laravel's pause
	// keys name.
	Connection string
	// Store reads the queues' depths; Roster, when the store keeps one,
	// the instances' state.
	Store  poller.Store
	Roster poller.Roster
	// History, when the store keeps one, is the recent runs of jobs, of
	// which the instances keep about Keep.
	History poller.History
	Keep    int
	// Tallies, when the store keeps them, count runs by minute and hour.
	Tallies poller.Tallies
	// Laravel does one of the console's operations through the app
	// (exec.Console): req is marshalled to JSON.
	Laravel func(ctx context.Context, req []byte) ([]byte, error)
	Access  Access
	Logger  *slog.Logger
	// Refresh is how often a live page renders again (default 1 s); the
	// failed jobs' page, which boots the app, every fifth time.
	Refresh time.Duration
}

// Server serves the console.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pages  map[string]*template.Template
	secret []byte
	mux    *http.ServeMux

	mu      sync.Mutex
	samples []sample // settled-job totals over the last minutes, for the rate
	failed  cached[[]failedJob]
	paused  cached[pausedQueues]
	history *history // nil without one
	metricsCache
	reads singleflight.Group // the app's answers, one read at a time
}

// sample is the instances' settled jobs at one time.
type sample struct {
	at      time.Time
	settled uint64
}

// cached is a value read from the app, kept a little while: each read
// boots the app.
type cached[T any] struct {
	at  time.Time
	v   T
	err error
}

// New returns a console server.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Access.LocalRole == "" {
		cfg.Access.LocalRole = Operator
	}
	s := &Server{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}, secret: make([]byte, 32)}
	rand.Read(s.secret)
	if cfg.History != nil {
		s.history = &history{store: cfg.History, keep: max(cfg.Keep, 1)}
	}
	for _, page := range []string{"overview", "running", "jobs", "run", "failed", "job", "batches", "batch", "metrics", "login"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("console page %s: %w", page, err)
		}
		s.pages[page] = t
	}
	static, _ := fs.Sub(assets, "assets")
	m := http.NewServeMux()
	m.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", s.login)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("GET /{$}", s.page("overview", s.overview))
	m.HandleFunc("GET /running", s.page("running", s.running))
	m.HandleFunc("GET /jobs", s.page("jobs", s.jobs))
	m.HandleFunc("GET /jobs/{uuid}", s.page("run", s.jobRuns))
	m.HandleFunc("GET /failed", s.page("failed", s.failedList))
	m.HandleFunc("GET /batches", s.page("batches", s.batches))
	m.HandleFunc("GET /batches/{id}", s.page("batch", s.batchPage))
	m.HandleFunc("POST /batches/{id}/cancel", s.action(s.cancelBatch))
	m.HandleFunc("POST /batches/{id}/retry", s.action(s.retryBatch))
	m.HandleFunc("GET /metrics", s.page("metrics", s.metrics))
	m.HandleFunc("GET /failed/{id}", s.page("job", s.failedJob))
	m.HandleFunc("GET /events", s.allowed(Viewer, s.events))
	m.HandleFunc("GET /api/overview", s.allowed(Viewer, s.api(s.overview)))
	m.HandleFunc("GET /api/jobs", s.allowed(Viewer, s.api(s.jobs)))
	m.HandleFunc("POST /queues/{queue}/pause", s.action(s.pause))
	m.HandleFunc("POST /queues/{queue}/resume", s.action(s.pause))
	m.HandleFunc("POST /restart", s.action(s.restart))
	m.HandleFunc("POST /failed/retry", s.action(s.retry))
	m.HandleFunc("POST /failed/forget", s.action(s.forget))
	s.mux = m
	return s, nil
}

// Close stops what the server does in the background.
func (s *Server) Close() {
	if s.history != nil {
		s.history.close()
	}
}

// ServeHTTP serves the console, with the headers every answer carries: no
// script but the console's own, no framing by another site.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// view is what every page's template gets.
type view struct {
	Title string
	Name  string
	Path  string // the page's path and query, for its live updates
	Who   Who
	CSRF  string
	Data  any
	Error string
	Said  string // what an action did, shown once back on the page
}

// allowed lets through the requests of users with at least role; the
// others are sent to sign in (a page) or refused.
func (s *Server) allowed(role Role, next func(http.ResponseWriter, *http.Request, Who)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.cfg.Access.who(r)
		switch {
		case s.cfg.Access.Open() && !loopbackHost(r.Host):
			// Open to whoever reaches it, so only under a name that is
			// this host's: another site renamed to 127.0.0.1 (DNS
			// rebinding) is not let in.
			http.Error(w, "misdirected: without [web] tokens or user_header the console answers only to localhost, 127.0.0.1 or [::1]", http.StatusMisdirectedRequest)
		case !ok && r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/events" && len(s.cfg.Access.Tokens) > 0:
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		case !ok:
			http.Error(w, "not signed in: send a token (Authorization: Bearer) or come through the proxy that authenticates users", http.StatusUnauthorized)
		case role == Operator && who.Role != Operator:
			s.log.Warn("console action refused: read-only user", "user", who.Name, "path", r.URL.Path)
			http.Error(w, "refused: "+who.Name+" may view but not act (an operator's role is needed)", http.StatusForbidden)
		default:
			next(w, r, who)
		}
	}
}

// page serves a page: its data read by get, rendered in the layout.
func (s *Server) page(name string, get func(*http.Request) (any, error)) http.HandlerFunc {
	return s.allowed(Viewer, func(w http.ResponseWriter, r *http.Request, who Who) {
		v := view{Title: titles[name], Name: s.cfg.Name, Who: who, CSRF: csrf(s.secret, who)}
		if _, live := s.live(r.URL.Path); live != nil {
			v.Path = r.URL.RequestURI()
		}
		data, err := get(r)
		if errors.Is(err, errNotFound) {
			http.NotFound(w, r)
			return
		}
		s.fill(&v, r.URL.Query(), data, err)
		var b bytes.Buffer
		if err := s.pages[name].ExecuteTemplate(&b, "layout", v); err != nil {
			s.log.Error("console page failed", "page", name, "error", err)
			http.Error(w, "the page failed to render", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b.Bytes())
	})
}

var titles = map[string]string{"overview": "Overview", "running": "Running", "jobs": "Jobs", "run": "Job", "failed": "Failed jobs", "job": "Failed job", "metrics": "Metrics", "batches": "Batches", "batch": "Batch", "login": "Sign in"}

var (
	errNotFound  = errors.New("not found")
	errNoHistory = errors.New("no job history: the queues' store keeps none (kqueue keeps it in Redis), or [web] history is -1")
	errNoTallies = errors.New("no metrics: the queues' store keeps no tallies (kqueue keeps them in Redis)")
)

// action serves an operator's POST: the user must be an operator and the
// form must carry the user's CSRF token. Then do runs, and the user is
// sent back where the form said.
func (s *Server) action(do func(*http.Request, Who) (string, error)) http.HandlerFunc {
	return s.allowed(Operator, func(w http.ResponseWriter, r *http.Request, who Who) {
		if !sameOrigin(r) || r.PostFormValue("csrf") != csrf(s.secret, who) {
			s.log.Warn("console action refused: no valid CSRF token", "user", who.Name, "path", r.URL.Path)
			http.Error(w, "refused: the form's CSRF token is missing or stale (reload the page and try again)", http.StatusForbidden)
			return
		}
		said, err := do(r, who)
		u := localPath(r.PostFormValue("back"))
		q := u.Query()
		for _, k := range []string{"said", "error", "sig"} {
			q.Del(k)
		}
		if err != nil {
			said = ""
			q.Set("error", err.Error())
		} else if said != "" {
			q.Set("said", said)
		}
		if err != nil || said != "" {
			q.Set("sig", s.sign(q.Get("said"), q.Get("error")))
		}
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
	})
}

// events keeps the page at ?path= current: its live part rendered again
// every Refresh and sent when it changed, until the page goes away.
func (s *Server) events(w http.ResponseWriter, r *http.Request, who Who) {
	u, err := url.Parse(r.URL.Query().Get("path"))
	if err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	name, get := s.live(u.Path)
	if get == nil {
		http.Error(w, "no live page at "+u.Path, http.StatusNotFound)
		return
	}
	every := s.cfg.Refresh
	if name == "failed" {
		every *= 5
	}
	pr := r.Clone(r.Context())
	pr.URL = u
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	flusher, _ := w.(http.Flusher)
	t := time.NewTicker(every)
	defer t.Stop()
	var last []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		v := view{Name: s.cfg.Name, Path: u.RequestURI(), Who: who, CSRF: csrf(s.secret, who)}
		data, err := get(pr)
		s.fill(&v, u.Query(), data, err)
		var b bytes.Buffer
		if err := s.pages[name].ExecuteTemplate(&b, "live", v); err != nil {
			return
		}
		if bytes.Equal(b.Bytes(), last) {
			continue
		}
		last = b.Bytes()
		// One JSON string per event: a line break of any kind in job data
		// cannot end the event's data early.
		js, _ := json.Marshal(string(last))
		msg := append(append([]byte("data: "), js...), '\n', '\n')
		if _, err := w.Write(msg); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// live names the page at path and its data, if it updates itself.
func (s *Server) live(path string) (string, func(*http.Request) (any, error)) {
	switch path {
	case "/":
		return "overview", s.overview
	case "/running":
		return "running", s.running
	case "/jobs":
		return "jobs", s.jobs
	case "/failed":
		return "failed", s.failedList
	case "/metrics":
		return "metrics", s.metrics
	}
	return "", nil
}

// api serves a page's data as JSON, for scripts and tests.
func (s *Server) api(get func(*http.Request) (any, error)) func(http.ResponseWriter, *http.Request, Who) {
	return func(w http.ResponseWriter, r *http.Request, _ Who) {
		data, err := get(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(data)
	}
}

// login signs a user in with a token: kept in an HttpOnly cookie that
// only this site's own requests carry.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.FormValue("next")).String()
	v := view{Title: titles["login"], Name: s.cfg.Name, Data: next}
	if r.Method == http.MethodPost {
		token := r.PostFormValue("token")
		if who, ok := s.cfg.Access.Tokens[digest(token)]; ok && token != "" && sameOrigin(r) {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: token, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"})
			s.log.Info("console sign-in", "user", who.Name, "role", string(who.Role))
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		v.Error = "that token is not one of web.tokens"
		w.WriteHeader(http.StatusUnauthorized)
	}
	var b bytes.Buffer
	if err := s.pages["login"].ExecuteTemplate(&b, "layout", v); err != nil {
		http.Error(w, "the page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}

// fill completes a page's view with its data, the error reading it, and
// what an action left in the page's address if the console signed it.
func (s *Server) fill(v *view, q url.Values, data any, err error) {
	v.Data = data
	if err != nil {
		v.Error = err.Error()
	}
	said, failed := q.Get("said"), q.Get("error")
	if (said != "" || failed != "") && hmac.Equal([]byte(q.Get("sig")), []byte(s.sign(said, failed))) {
		v.Said = said
		if v.Error == "" {
			v.Error = failed
		}
	}
}

// sign is the MAC of an action's message, so that a link made elsewhere
// cannot put words in the console's mouth.
func (s *Server) sign(said, failed string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(said + "\x00" + failed))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:22]
}

// localPath is s as a path on this site, "/" if it is anything else (another
// site, a scheme, a backslash that browsers read as a slash).
func localPath(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") ||
		strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\x00\r\n\t") {
		return &url.URL{Path: "/"}
	}
	return &url.URL{Path: u.Path, RawQuery: u.RawQuery}
}

// loopbackHost reports whether a request's Host names this machine's
// loopback: localhost, 127.0.0.1 or [::1], any port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ask does one operation through the app and decodes its answer into out.
func (s *Server) ask(ctx context.Context, req map[string]any, out any) error {
	if s.cfg.Laravel == nil {
		return errors.New("this console has no Laravel app to ask")
	}
	b, _ := json.Marshal(req)
	answer, err := s.cfg.Laravel(ctx, b)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(answer, out)
}

var funcs = template.FuncMap{
	"age": func(d time.Duration) string {
		switch {
		case d < time.Second:
			return d.Round(time.Millisecond).String()
		case d < time.Minute:
			return d.Round(100 * time.Millisecond).String()
		}
		return d.Round(time.Second).String()
	},
	"mib": func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) },
	"since": func(t time.Time) string {
		return time.Since(t).Round(time.Second).String()
	},
	"firstLine": firstLine,
	"percent":   func(f float64) float64 { return 100 * f },
	"path":      url.PathEscape,
}

// firstLine is s up to its first line break, at most its first 200 bytes
// (whole characters).
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return cut.Head(s, 200)
}
