package topology

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/web"
)

// TestConsoleSeesEveryHost: two kqueue instances on two hosts (network
// namespaces, each with a hostname of its own) share one Redis; a console
// on a third reaches neither host, yet shows both — each instance
// publishes its state in Redis — with the jobs each runs. A host killed
// with SIGKILL leaves the console once its entry expires.
func TestConsoleSeesEveryHost(t *testing.T) {
	t.Parallel()
	needRoot(t)
	testenv.Need(t, "unshare")
	bin := kqueueBinary(t)
	hs := hosts(t, 2)
	port := testenv.FreePort(t)
	bind := "127.0.0.1"
	for _, h := range hs {
		bind += " " + h.gateway
	}
	r := testenv.StartRedis(t, "--port", fmt.Sprint(port), "--bind", bind, "--protected-mode", "no")
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	app.Env["CACHE_DRIVER"] = "file"

	// kqueue on host h, named name: its own hostname (a UTS namespace),
	// its PHP reaching Redis over the host's link.
	var procs []*proc
	for i, name := range []string{"east", "west"} {
		h := hs[i]
		producer := app.Env["REDIS_HOST"]
		app.Env["REDIS_HOST"], app.Env["REDIS_PORT"] = h.gateway, fmt.Sprint(port)
		cfg := writeConfig(t, app, name, fmt.Sprintf("url = \"redis://%s:%d/0\"", h.gateway, port), "[pool]\nworkers = 2\n")
		app.Env["REDIS_HOST"], app.Env["REDIS_PORT"] = producer, "0"
		cmd := h.command("", nil, "unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, "host-"+name, bin, "run", "--config", cfg)
		procs = append(procs, start(t, name, cmd))
	}
	webPort := testenv.FreePort(t)
	cfg := writeConfig(t, app, "console", fmt.Sprintf("url = \"redis://127.0.0.1:%d/0\"", port), fmt.Sprintf("[web]\nlisten = \"127.0.0.1:%d\"\n", webPort))
	console := exec.Command(bin, "web", "--config", cfg) // the root namespace: neither host's
	start(t, "console", console)
	overview := func() (web.Overview, bool) {
		var o web.Overview
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/overview", webPort))
		if err != nil {
			return o, false
		}
		defer resp.Body.Close()
		return o, resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&o) == nil
	}
	hostsOf := func(o web.Overview) []string {
		var names []string
		for _, in := range o.Instances {
			names = append(names, in.Host+"/"+in.Instance)
		}
		slices.Sort(names)
		return names
	}
	want := []string{"host-east/east", "host-west/west"}
	testenv.Eventually(t, 60*time.Second, "the console to show both hosts", func() bool {
		o, ok := overview()
		return ok && slices.Equal(hostsOf(o), want)
	})

	// Jobs on both hosts at once: four of 3 s, two workers each.
	app.Artisan(t, "kq:dispatch", "status")
	app.Artisan(t, "kq:dispatch", "long", "--count=2")
	testenv.Eventually(t, 60*time.Second, "running jobs on both hosts", func() bool {
		o, ok := overview()
		if !ok {
			return false
		}
		busy := 0
		for _, in := range o.Instances {
			if len(in.Running) > 0 {
				busy++
			}
		}
		return busy == 2
	})

	// One host dies without a word: it leaves once its entry expires.
	procs[1].cmd.Process.Signal(syscall.SIGKILL)
	<-procs[1].done
	testenv.Eventually(t, 30*time.Second, "the killed host to leave the console", func() bool {
		o, ok := overview()
		return ok && slices.Equal(hostsOf(o), want[:1])
	})
	if o, _ := overview(); !strings.HasPrefix(o.Instances[0].ID, "host-east/") {
		t.Errorf("the instance left: %+v", o.Instances)
	}
}
