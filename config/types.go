package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a span of time written as seconds (90) or with a unit ("90s",
// "2m").
type Duration time.Duration

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*d = Duration(time.Duration(v) * time.Second)
	case float64:
		*d = Duration(v * float64(time.Second))
	case string:
		n, err := parseSeconds(v)
		if err != nil {
			return err
		}
		*d = n
	default:
		return fmt.Errorf("want a duration such as 90 or \"90s\", got %T", v)
	}
	if *d < 0 {
		return fmt.Errorf("duration must not be negative")
	}
	if *d == 0 {
		*d = -1 // written as zero: distinct from "not set"
	}
	return nil
}

// D is the time.Duration, with "explicitly zero" read as zero.
func (d Duration) D() time.Duration {
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}

func (d Duration) String() string { return d.D().String() }

func parseSeconds(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil && n >= 0 {
		return Duration(n * float64(time.Second)), nil
	}
	t, err := time.ParseDuration(s)
	if err != nil || t < 0 {
		return 0, fmt.Errorf("want a duration such as 90 or \"90s\", got %q", s)
	}
	return Duration(t), nil
}

// Size is a number of bytes written as megabytes (256) or with a unit
// ("256M", "1G", "512K").
type Size int64

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*s = Size(v << 20)
	case string:
		t := strings.ToUpper(strings.TrimSpace(v))
		t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
		mult := int64(1 << 20)
		switch {
		case strings.HasSuffix(t, "K"):
			mult, t = 1<<10, t[:len(t)-1]
		case strings.HasSuffix(t, "M"):
			mult, t = 1<<20, t[:len(t)-1]
		case strings.HasSuffix(t, "G"):
			mult, t = 1<<30, t[:len(t)-1]
		}
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a size such as 256 (MB) or \"256M\", got %q", v)
		}
		*s = Size(n * mult)
	default:
		return fmt.Errorf("want a size such as 256 (MB) or \"256M\", got %T", v)
	}
	if *s == 0 {
		*s = -1 // written as zero: distinct from "not set"
	}
	return nil
}

// Bytes is the size, with "explicitly zero" read as zero.
func (s Size) Bytes() int64 {
	if s < 0 {
		return 0
	}
	return int64(s)
}

func (s Size) String() string { return fmt.Sprintf("%dM", s.Bytes()>>20) }
