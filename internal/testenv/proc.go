package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// ProcStat is the fields of /proc/PID/stat from the third, the process's
// state, on: field N as proc(5) numbers them is at [N-3]. The second, the
// command, is left out: it is in parentheses and may hold spaces.
func ProcStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])), nil
}
