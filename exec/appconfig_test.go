package exec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kqueue/kqueue/internal/testenv"
)

// AppConfig answers with the app's queue connection and the prefix its
// Redis client applies, and a connection the app does not have is an
// error that names it.
func TestAppConfig(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	env := map[string]string{"REDIS_PREFIX": "p:"}
	for k, v := range app.Env {
		env[k] = v
	}
	b, err := AppConfig(t.Context(), Config{AppPath: app.Path, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Connection string `json:"connection"`
		Queue      struct {
			Driver     string `json:"driver"`
			RetryAfter int    `json:"retry_after"`
		} `json:"queue"`
		Redis struct {
			Host       string `json:"host"`
			Prefix     string `json:"prefix"`
			PrefixFrom string `json:"prefix_from"`
		} `json:"redis"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if got.Connection != "redis" || got.Queue.Driver != "redis" || got.Queue.RetryAfter != 90 ||
		got.Redis.Host != r.Socket || got.Redis.Prefix != "p:" || got.Redis.PrefixFrom != "client" {
		t.Errorf("AppConfig = %s", b)
	}

	_, err = AppConfig(t.Context(), Config{AppPath: app.Path, Env: app.Env, Connection: "nope"})
	if !errors.Is(err, ErrAppConfig) || !strings.Contains(err.Error(), `the app has no queue connection "nope"`) {
		t.Errorf("AppConfig for a connection the app lacks: %v", err)
	}
}
