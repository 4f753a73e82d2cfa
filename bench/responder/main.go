// Command responder is a benchmark double for PHP: the daemon's ceiling
// (bench/daemon_test.go) runs kqueue with it as the app's php binary.
// Started on worker.php it speaks the worker's protocol (exec/php/
// worker.php) and answers every job at once as a no-op that deleted
// itself; started on anything else it runs the real php with the same
// arguments. It is used nowhere but in that benchmark.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

const (
	began  = `{"op":"began"}` + "\n"
	doneOK = `{"op":"done","deleted":true,"released":false,"release_at":null,"failed":false,"error":null,"us":1}` + "\n"
)

func main() {
	worker := false
	for _, a := range os.Args[1:] {
		worker = worker || strings.HasSuffix(a, "/worker.php")
	}
	if !worker {
		php := os.Getenv("KQ_RESPONDER_PHP")
		if php == "" {
			php = "/usr/bin/php"
		}
		err := syscall.Exec(php, append([]string{php}, os.Args[1:]...), os.Environ())
		fmt.Fprintln(os.Stderr, "responder:", err)
		os.Exit(1)
	}
	in := bufio.NewReaderSize(os.NewFile(3, "requests"), 64<<10)
	out := os.NewFile(4, "answers")
	fmt.Fprintf(out, `{"op":"ready","pid":%d,"laravel":"responder","php":"responder"}`+"\n", os.Getpid())
	for {
		line, err := in.ReadSlice('\n')
		if err != nil {
			return // EOF: the dispatcher let it go
		}
		var req struct {
			Op  string `json:"op"`
			Len int64  `json:"len"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			fmt.Fprintln(os.Stderr, "responder: a request that is not JSON:", err)
			os.Exit(1)
		}
		if _, err := in.Discard(int(req.Len)); err != nil {
			return
		}
		switch req.Op {
		case "run":
			io.WriteString(out, began+doneOK)
		case "stop":
		case "defaults":
			io.WriteString(out, `{"op":"done","defaults":{}}`+"\n")
		default:
			io.WriteString(out, `{"op":"done","error":"the responder runs no `+req.Op+`"}`+"\n")
		}
	}
}
