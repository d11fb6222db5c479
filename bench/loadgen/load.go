// The benchmark's load generator: open loop at a fixed offered rate (latency counted from
// each request's intended send time, so queueing is charged to the target) or closed loop
// with a fixed number of concurrent clients (maximum throughput).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ",") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

type sample struct {
	latency time.Duration
	ttfb    time.Duration
	sendLag time.Duration
	err     string
}

type percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type report struct {
	Mode         string         `json:"mode"`
	OfferedRate  float64        `json:"offered_rate"`
	Concurrency  int            `json:"concurrency"`
	DurationS    float64        `json:"duration_s"`
	Requests     int            `json:"requests"`
	OK           int            `json:"ok"`
	Errors       int            `json:"errors"`
	ErrorSamples map[string]int `json:"error_samples"`
	AchievedRPS  float64        `json:"achieved_rps"`
	LatencyMS    percentiles    `json:"latency_ms"`
	TTFBMS       percentiles    `json:"ttfb_ms"`
	SendLagMS    percentiles    `json:"send_lag_ms"`
	// latency of the answers with each non-200 status (how fast a refusal comes)
	StatusLatencyMS map[string]percentiles `json:"status_latency_ms"`
}

type loader struct {
	client  *http.Client
	url     string
	body    []byte
	headers http.Header
	stream  bool
	keys    []string // when set, each request is sent with the next of these as its bearer key
	next    atomic.Uint64
}

// do sends one request; sendLag is how late the generator itself was in sending it.
func (l *loader) do(ctx context.Context, intended time.Time) sample {
	lag := time.Since(intended)
	s := l.exchange(ctx, intended)
	s.sendLag = lag
	return s
}

func (l *loader) exchange(ctx context.Context, intended time.Time) sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(l.body))
	if err != nil {
		return sample{err: "build: " + err.Error()}
	}
	req.Header = l.headers.Clone()
	if len(l.keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+l.keys[(l.next.Add(1)-1)%uint64(len(l.keys))])
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return sample{err: classify(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return sample{err: fmt.Sprintf("status %d", resp.StatusCode), latency: time.Since(intended)}
	}
	if !l.stream {
		_, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return sample{err: classify(err)}
		}
		d := time.Since(intended)
		return sample{latency: d, ttfb: d}
	}
	reader := bufio.NewReaderSize(resp.Body, 64*1024)
	var ttfb time.Duration
	sawDone := false
	for {
		line, err := reader.ReadSlice('\n')
		if len(line) > 0 && ttfb == 0 {
			ttfb = time.Since(intended)
		}
		if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			sawDone = true
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return sample{err: classify(err)}
		}
	}
	if !sawDone {
		return sample{err: "stream ended without [DONE]"}
	}
	return sample{latency: time.Since(intended), ttfb: ttfb}
}

func classify(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "Timeout"):
		return "timeout"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "reset"):
		return "connection reset"
	}
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

func summarize(values []time.Duration) percentiles {
	if len(values) == 0 {
		return percentiles{}
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	at := func(q float64) float64 {
		idx := int(q*float64(len(values))+0.5) - 1
		if idx < 0 {
			idx = 0
		}
		if idx >= len(values) {
			idx = len(values) - 1
		}
		return ms(values[idx])
	}
	var total time.Duration
	for _, v := range values {
		total += v
	}
	return percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(values[len(values)-1]),
		Mean: ms(total / time.Duration(len(values)))}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000.0 }

type collector struct {
	mu      sync.Mutex
	samples []sample
}

func (c *collector) add(s sample) {
	c.mu.Lock()
	c.samples = append(c.samples, s)
	c.mu.Unlock()
}

// openLoop sends one request every 1/rate seconds whatever the target's state, each in its
// own goroutine; requests intended during the warm-up are sent but not counted.
func (l *loader) openLoop(rate float64, warmup, duration, drain time.Duration, maxInFlight int64) ([]sample, time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	col := &collector{}
	var wg sync.WaitGroup
	var inFlight int64
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	for i := 0; ; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if !intended.Before(end) {
			break
		}
		preciseSleepUntil(intended)
		counted := !intended.Before(measureFrom)
		if atomic.LoadInt64(&inFlight) >= maxInFlight {
			if counted {
				col.add(sample{err: "generator in-flight cap reached"})
			}
			continue
		}
		atomic.AddInt64(&inFlight, 1)
		wg.Add(1)
		go func(intended time.Time, counted bool) {
			defer wg.Done()
			defer atomic.AddInt64(&inFlight, -1)
			s := l.do(ctx, intended)
			if counted {
				col.add(s)
			}
		}(intended, counted)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		cancel()
		<-done
	}
	return col.samples, duration
}

// closedLoop keeps `concurrency` requests in flight back to back.
func (l *loader) closedLoop(concurrency int, warmup, duration time.Duration) ([]sample, time.Duration) {
	col := &collector{}
	var wg sync.WaitGroup
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(30*time.Second))
	defer cancel()
	for c := 0; c < concurrency; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				now := time.Now()
				if !now.Before(end) {
					return
				}
				s := l.do(ctx, now)
				if !now.Before(measureFrom) {
					col.add(s)
				}
			}
		}()
	}
	wg.Wait()
	return col.samples, duration
}

func runLoad(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "", "target URL")
	bodyPath := fs.String("body", "", "file holding the JSON request body")
	stream := fs.Bool("stream", false, "read the answer as an SSE stream")
	rate := fs.Float64("rate", 0, "offered requests per second (open loop); 0 means closed loop")
	concurrency := fs.Int("concurrency", 32, "clients in the closed loop")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before it")
	drain := fs.Duration("drain", 10*time.Second, "how long to wait for late answers")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request timeout")
	maxInFlight := fs.Int64("max-in-flight", 20000, "open loop: requests outstanding before new ones count as errors")
	var headers headerList
	fs.Var(&headers, "header", "extra header 'Name: value' (repeatable)")
	keysPath := fs.String("keys", "", "file of bearer keys, one a line: requests take them in turn")
	_ = fs.Parse(args)
	var keys []string
	if *keysPath != "" {
		raw, err := os.ReadFile(*keysPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cannot read keys:", err)
			os.Exit(2)
		}
		keys = strings.Fields(string(raw))
	}

	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot read body:", err)
		os.Exit(2)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	for _, raw := range headers {
		name, value, ok := strings.Cut(raw, ":")
		if !ok {
			fmt.Fprintln(os.Stderr, "bad header:", raw)
			os.Exit(2)
		}
		h.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	l := &loader{client: &http.Client{Transport: transport, Timeout: *timeout}, url: *url, body: body, headers: h, stream: *stream, keys: keys}

	var samples []sample
	var measured time.Duration
	rep := report{ErrorSamples: map[string]int{}}
	if *rate > 0 {
		rep.Mode, rep.OfferedRate = "open", *rate
		samples, measured = l.openLoop(*rate, *warmup, *duration, *drain, *maxInFlight)
	} else {
		rep.Mode, rep.Concurrency = "closed", *concurrency
		samples, measured = l.closedLoop(*concurrency, *warmup, *duration)
	}
	var lat, ttfb, lags []time.Duration
	byStatus := map[string][]time.Duration{}
	for _, s := range samples {
		lags = append(lags, s.sendLag)
		if s.err != "" {
			rep.Errors++
			rep.ErrorSamples[s.err]++
			if strings.HasPrefix(s.err, "status ") {
				byStatus[s.err[7:]] = append(byStatus[s.err[7:]], s.latency)
			}
			continue
		}
		rep.OK++
		lat = append(lat, s.latency)
		ttfb = append(ttfb, s.ttfb)
	}
	rep.Requests = len(samples)
	rep.DurationS = measured.Seconds()
	rep.AchievedRPS = float64(rep.OK) / measured.Seconds()
	rep.LatencyMS = summarize(lat)
	rep.TTFBMS = summarize(ttfb)
	rep.SendLagMS = summarize(lags)
	rep.StatusLatencyMS = map[string]percentiles{}
	for status, values := range byStatus {
		rep.StatusLatencyMS[status] = summarize(values)
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
}

// preciseSleepUntil blocks this OS thread in nanosleep: Go's own timers wake up to a
// millisecond late, which would be charged to the target as latency.
func preciseSleepUntil(t time.Time) {
	wait := time.Until(t)
	if wait <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(wait.Nanoseconds())
	_ = syscall.Nanosleep(&ts, nil)
}
