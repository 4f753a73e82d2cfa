package testenv

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQS is an SQS-compatible server for a test: moto's server (Debian's
// python3-moto), which testdata/chroots.sh installs in the trixie chroot
// — Debian 12 has no package of it. It listens on loopback, speaks SQS's
// JSON protocol, and keeps receive counts, visibility timeouts and FIFO
// message groups as SQS does (poller/sqs's emulator test shows it).
type SQS struct {
	// Endpoint is its URL ("http://127.0.0.1:PORT").
	Endpoint string
	// Client is the test's own client of it.
	Client *sqs.Client

	root string
	port int
	cmd  *exec.Cmd
	out  SyncBuffer
}

// Region is the region the tests' SQS queues are in; moto keeps a
// server's queues per region.
const Region = "us-east-1"

// StartSQS starts an SQS server and stops it at cleanup. Without the
// trixie chroot (or root, which chroot needs) the test is skipped, and
// fails under CI=true.
func StartSQS(t testing.TB) *SQS {
	t.Helper()
	root := Laravel{"10", "trixie"}.Root(t)
	if _, err := os.Stat(filepath.Join(root, "usr", "bin", "moto_server")); err != nil {
		miss := t.Skipf
		if os.Getenv("CI") != "" {
			miss = t.Fatalf
		}
		miss("the SQS tests run moto's server from the trixie chroot: rebuild it with make chroots (testdata/chroots.sh): %v", err)
	}
	s := &SQS{root: root, port: FreePort(t)}
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	s.Client = sqs.New(sqs.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	s.Start(t)
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again, after Stop: its queues are gone then)
// and waits until it answers.
func (s *SQS) Start(t testing.TB) {
	t.Helper()
	s.out.Reset()
	s.cmd = InChroot(context.Background(), s.root, "/", "/usr/bin/moto_server", "-H", "127.0.0.1", "-p", strconv.Itoa(s.port))
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.cmd.SysProcAttr.Setpgid = true
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Client.ListQueues(context.Background(), &sqs.ListQueuesInput{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not come up: %v\n%s", err, s.out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a starting server: there is no event to wait on
	}
}

// Stop stops the server.
func (s *SQS) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
}

// CreateQueue creates a queue (a FIFO one when its name ends in ".fifo")
// with these attributes and returns its URL.
func (s *SQS) CreateQueue(t testing.TB, name string, attrs map[string]string) string {
	t.Helper()
	all := map[string]string{}
	if filepath.Ext(name) == ".fifo" {
		all[string(types.QueueAttributeNameFifoQueue)] = "true"
	}
	for k, v := range attrs {
		all[k] = v
	}
	out, err := s.Client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: all})
	if err != nil {
		t.Fatalf("create SQS queue %s: %v", name, err)
	}
	return *out.QueueUrl
}

// Left counts a queue's messages: visible, delayed and in flight.
func (s *SQS) Left(t testing.TB, url string) int {
	t.Helper()
	out, err := s.Client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("SQS queue %s: %v", url, err)
	}
	n := 0
	for _, k := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"} {
		v, _ := strconv.Atoi(cmp.Or(out.Attributes[k], "0"))
		n += v
	}
	return n
}

// Output is what the server printed.
func (s *SQS) Output() string { return s.out.String() }

// Account is the account id in the test server's queue URLs.
const Account = "123456789012"

// Prefix is the app's SQS prefix (connections.sqs.prefix): the queues' URL
// without their name.
func (s *SQS) Prefix() string { return s.Endpoint + "/" + Account }

// URL is the URL of the queue named name.
func (s *SQS) URL(name string) string { return s.Prefix() + "/" + name }

// QueueOnSQS moves the app's queue connection to its sqs connection on s,
// and creates the queues named (default: "default") with these
// attributes.
func (a *App) QueueOnSQS(t testing.TB, s *SQS, attrs map[string]string, queues ...string) {
	t.Helper()
	for k, v := range map[string]string{"QUEUE_CONNECTION": "sqs", "SQS_PREFIX": s.Prefix(), "SQS_ENDPOINT": s.Endpoint,
		"AWS_ACCESS_KEY_ID": "AKIATESTKEY", "AWS_SECRET_ACCESS_KEY": "test-secret-never-logged", "AWS_DEFAULT_REGION": Region} {
		a.Env[k] = v
	}
	if len(queues) == 0 {
		queues = []string{"default"}
	}
	for _, q := range queues {
		s.CreateQueue(t, q, attrs)
	}
}
