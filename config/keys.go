package config

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

var arrayItem = regexp.MustCompile(`^([a-z_]+)\[(\d+)\]$`)

// lineOf finds the line where key is written, or 0.
func lineOf(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	last := key[len(key)-1]
	if i := strings.IndexByte(last, '['); i >= 0 { // "queue[1]" from our own messages
		last = last[:i]
	}
	assign := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(last) + `"?\s*=`)
	table := regexp.MustCompile(`^\s*\[\[?\s*` + regexp.QuoteMeta(strings.Join(key, ".")) + `\s*\]`)
	lines := bytes.Split(data, []byte("\n"))
	from := 0
	// "queue[1].name" from our own messages: the name under the second
	// [[queue]].
	if m := arrayItem.FindStringSubmatch(key[0]); m != nil && len(key) > 1 {
		header := regexp.MustCompile(`^\s*\[\[\s*` + regexp.QuoteMeta(m[1]) + `\s*\]\]`)
		n, _ := strconv.Atoi(m[2])
		for i, line := range lines {
			if header.Match(line) {
				if n == 0 {
					from = i + 1
					break
				}
				n--
			}
		}
	}
	for i, line := range lines[from:] {
		if assign.Match(line) || table.Match(line) {
			return from + i + 1
		}
	}
	return 0
}

// suggest names the nearest valid key to an unknown one.
func suggest(key toml.Key) string {
	valid := keysAt(reflect.TypeOf(Config{}), key[:len(key)-1])
	if valid == nil {
		return ""
	}
	bad := key[len(key)-1]
	best, bestDist := "", 4
	for _, v := range valid {
		if d := distance(bad, v); d < bestDist {
			best, bestDist = v, d
		}
	}
	if best == "" {
		return fmt.Sprintf(" (valid keys here: %s)", strings.Join(valid, ", "))
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// keysAt lists the TOML keys valid in the table at path.
func keysAt(t reflect.Type, path []string) []string {
	for _, part := range path {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, part)
		if !ok {
			return nil
		}
		t = f.Type
	}
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("toml") == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
