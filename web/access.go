package web

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
)

// Role is what a user of the console may do.
type Role string

const (
	Viewer   Role = "viewer"   // sees every page, acts on nothing
	Operator Role = "operator" // also pauses, resumes, restarts, retries and forgets
)

// Who is the user behind a request.
type Who struct {
	Name string
	Role Role
}

// Access says who may use the console. With neither Tokens nor
// UserHeader, every request is LocalRole's — which is why the console then
// serves only where nobody else reaches (see Local).
type Access struct {
	Tokens     map[string]Who // by the token's SHA-256, hex
	UserHeader string         // the header a reverse proxy puts its user in
	Operators  []string       // UserHeader users who may act
	LocalRole  Role
}

// Open reports whether the console lets in requests it cannot tell apart.
func (a Access) Open() bool { return len(a.Tokens) == 0 && a.UserHeader == "" }

// Local reports whether addr is one only this host reaches: a unix socket
// or a loopback address.
func Local(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}

// ReadTokens reads a tokens file: one "ROLE TOKEN" per line (ROLE operator
// or viewer), blank lines and lines starting with # skipped. A token names
// its user in the journal by its role and line ("operator@3").
func ReadTokens(path string) (map[string]Who, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("web.tokens: %w", err)
	}
	defer f.Close()
	tokens := map[string]Who{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		role, token, ok := strings.Cut(line, " ")
		token = strings.TrimSpace(token)
		switch {
		case !ok || (role != string(Operator) && role != string(Viewer)):
			return nil, fmt.Errorf("%s:%d: want \"operator TOKEN\" or \"viewer TOKEN\"", path, n)
		case len(token) < 16:
			return nil, fmt.Errorf("%s:%d: the token is shorter than 16 characters: too easy to guess", path, n)
		}
		tokens[digest(token)] = Who{Name: fmt.Sprintf("%s@%d", role, n), Role: Role(role)}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("web.tokens: %w", err)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("web.tokens: %s has no token", path)
	}
	return tokens, nil
}

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return fmt.Sprintf("%x", sum)
}

// tokenCookie carries a token a user signed in with.
const tokenCookie = "kqueue_token"

// who is the user behind r, or false when r is not let in.
func (a Access) who(r *http.Request) (Who, bool) {
	if a.Open() {
		return Who{Name: "local", Role: a.LocalRole}, true
	}
	if len(a.Tokens) > 0 {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			if c, err := r.Cookie(tokenCookie); err == nil {
				token = c.Value
			}
		}
		if w, ok := a.Tokens[digest(token)]; ok && token != "" {
			return w, true
		}
	}
	if a.UserHeader != "" {
		if user := r.Header.Get(a.UserHeader); user != "" {
			if slices.Contains(a.Operators, user) {
				return Who{Name: user, Role: Operator}, true
			}
			return Who{Name: user, Role: Viewer}, true
		}
	}
	return Who{}, false
}

// csrf is the token a form of w's carries: a MAC of the user under the
// server's secret, so another site's page cannot make one.
func csrf(secret []byte, w Who) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(string(w.Role) + "\x00" + w.Name))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sameOrigin reports whether a browser says r comes from the console's
// own pages (requests without the headers, from scripts, pass: they carry
// the CSRF token anyway).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != "null" {
		return strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://") == r.Host
	}
	return true
}
