// Package cgroup will give each isolated job its own transient cgroup with
// kernel-enforced memory, CPU and task limits (systemd scopes, cgroupfs v2
// and v1, or none). It is empty until the isolation work lands: today every
// job runs in the warm pool.
package cgroup
