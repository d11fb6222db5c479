// Command turnout-loadgen is the benchmark's compiled half: `mock` serves a fast
// OpenAI-format upstream (and an Anthropic Messages API one on /v1/messages), `load` drives a
// target at a fixed rate or concurrency.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: turnout-loadgen mock|load [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "mock":
		runMock(os.Args[2:])
	case "load":
		runLoad(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown command:", os.Args[1])
		os.Exit(2)
	}
}
