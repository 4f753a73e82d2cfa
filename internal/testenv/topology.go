package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server (or Sentinel) on a loopback TCP port.
type Server struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
	out  *SyncBuffer
}

// FreePort is a TCP port free on loopback now, whose Cluster bus port
// (port + 10000) is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		if bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// StartServer starts redis-server on loopback with more --options and
// stops it at cleanup. port 0 picks a free one.
func StartServer(t testing.TB, port int, args ...string) *Server {
	t.Helper()
	Need(t, "redis-server")
	if port == 0 {
		port = FreePort(t)
	}
	dir := shortTempDir(t, "")
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, out: &SyncBuffer{}}
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--loglevel", "warning"}, args...)
	s.cmd = exec.Command("redis-server", all...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	Eventually(t, 10*time.Second, "redis-server on "+s.Addr, func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
	return s
}

// Client is a plain client of this one server.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// Stop stops the server.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Output is what the server wrote.
func (s *Server) Output() string { return s.out.String() }

// Cluster is a Redis Cluster of masters on loopback, without replicas.
type Cluster struct {
	Nodes  []*Server
	Client *redis.ClusterClient
}

// Addrs are the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return a
}

// StartCluster starts n redis-server --cluster-enabled yes and joins them
// with redis-cli --cluster create: n masters sharing the 16384 slots.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Need(t, "redis-server", "redis-cli")
	c := &Cluster{}
	for range n {
		c.Nodes = append(c.Nodes, StartServer(t, 0, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Every node must see every slot served before the cluster is used.
	for _, node := range c.Nodes {
		cl := node.Client(t)
		Eventually(t, 30*time.Second, "cluster_state:ok on "+node.Addr, func() bool {
			info, err := cl.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n))
		})
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { c.Client.Close() })
	return c
}

// Sentinel is a primary, its replica and one Sentinel watching them as
// "mymaster".
type Sentinel struct {
	Primary, Replica, Sentinel *Server
	// Master is the name Sentinel knows the primary by.
	Master string
	// Client talks to the Sentinel.
	Client *redis.SentinelClient
}

// StartSentinel starts a primary, a replica of it and a Sentinel, and
// waits until the Sentinel knows the replica (so it could fail over).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{Master: "mymaster"}
	s.Primary = StartServer(t, 0)
	s.Replica = StartServer(t, 0, "--replicaof", "127.0.0.1", strings.TrimPrefix(s.Primary.Addr, "127.0.0.1:"))
	port := FreePort(t)
	dir := shortTempDir(t, "")
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor %s 127.0.0.1 %s 1\n"+
		"sentinel down-after-milliseconds %[3]s 2000\n"+
		"sentinel failover-timeout %[3]s 10000\n",
		port, dir, s.Master, strings.TrimPrefix(s.Primary.Addr, "127.0.0.1:"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sen := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, out: &SyncBuffer{}}
	sen.cmd = exec.Command("redis-server", conf, "--sentinel")
	sen.cmd.Stdout, sen.cmd.Stderr = sen.out, sen.out
	if err := sen.cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	t.Cleanup(sen.Stop)
	s.Sentinel = sen
	s.Client = redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
	t.Cleanup(func() { s.Client.Close() })
	Eventually(t, 30*time.Second, "Sentinel to know the replica", func() bool {
		replicas, err := s.Client.Replicas(context.Background(), s.Master).Result()
		if err != nil || len(replicas) != 1 {
			return false
		}
		return replicas[0]["flags"] == "slave" && replicas[0]["master-link-status"] == "ok"
	})
	return s
}

// PrimaryAddr is the primary's address as the Sentinel says now.
func (s *Sentinel) PrimaryAddr(ctx context.Context) (string, error) {
	a, err := s.Client.GetMasterAddrByName(ctx, s.Master).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}
