package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// webhookTimeout bounds one call of the alert webhook.
const webhookTimeout = 10 * time.Second

// webhook returns what tells a long-wait alert, and its recovery, to the
// [alerts] webhook: a POST of Slack's incoming-webhook JSON ({"text": …}),
// which Slack, Mattermost, Rocket.Chat and most chat tools take. Each call
// runs in its own goroutine until ctx ends, so a slow receiver holds
// nothing up. The URL carries a secret: only its host is logged.
func webhook(ctx context.Context, raw string, log *slog.Logger) func(poller.Alert) {
	u, _ := url.Parse(raw) // checked by config
	client := &http.Client{Timeout: webhookTimeout}
	return func(a poller.Alert) {
		body, _ := json.Marshal(map[string]string{"text": a.String()})
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("it answered %s", resp.Status)
				}
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("the alert webhook was not told", "queue", a.Queue, "webhook_host", u.Host, "error", scrub(err, raw, u.Host))
			}
		}()
	}
}

// scrub keeps the webhook's secret URL out of an error's text.
func scrub(err error, raw, host string) string {
	return strings.ReplaceAll(err.Error(), raw, "https://"+host+"/…")
}
