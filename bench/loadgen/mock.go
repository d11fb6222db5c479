// The benchmark's mock upstream: an OpenAI-format server that answers with fixed,
// realistic bodies as fast as the machine allows, so that it is never the bottleneck.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"
)

const completionBody = `{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,` +
	`"model":"bench-model-2024-08-06","system_fingerprint":"fp_bench","service_tier":"default",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"The weather in Paris is mild today ` +
	`with light clouds and a gentle breeze from the west. Temperatures will reach about eighteen degrees in ` +
	`the afternoon, falling to eleven overnight. No rain is expected before the weekend, when a front ` +
	`arrives from the Atlantic.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":412,"completion_tokens":64,"total_tokens":476,` +
	`"prompt_tokens_details":{"cached_tokens":128,"audio_tokens":0},` +
	`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,` +
	`"rejected_prediction_tokens":0}}}`

const embeddingBody = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":` +
	`[0.0023064255,-0.009327292,-0.0028842222,0.012345,0.0456,-0.0789,0.0101,0.0202]}],` +
	`"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`

const modelsBody = `{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,` +
	`"owned_by":"bench"}]}`

type streamFlags struct {
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type mockServer struct {
	chunks   int
	chunkGap time.Duration
	latency  time.Duration
}

func (m *mockServer) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var flags streamFlags
	if err := json.Unmarshal(body, &flags); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"invalid json","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	if m.latency > 0 {
		time.Sleep(m.latency)
	}
	if !flags.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, completionBody)
		return
	}
	m.stream(w, flags.StreamOptions != nil && flags.StreamOptions.IncludeUsage)
}

func (m *mockServer) stream(w http.ResponseWriter, includeUsage bool) {
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	usageField := ""
	if includeUsage {
		usageField = `,"usage":null`
	}
	prefix := `data: {"id":"chatcmpl-bench0001","object":"chat.completion.chunk","created":1700000000,` +
		`"model":"bench-model-2024-08-06","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":`
	_, _ = io.WriteString(w, prefix+`{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]`+usageField+"}\n\n")
	if flusher != nil {
		flusher.Flush()
	}
	for i := 0; i < m.chunks; i++ {
		if m.chunkGap > 0 {
			time.Sleep(m.chunkGap)
		}
		_, _ = fmt.Fprintf(w, "%s{\"content\":\"word%d \"},\"logprobs\":null,\"finish_reason\":null}]%s}\n\n", prefix, i, usageField)
		if flusher != nil {
			flusher.Flush()
		}
	}
	_, _ = io.WriteString(w, prefix+`{},"logprobs":null,"finish_reason":"stop"}]`+usageField+"}\n\n")
	if includeUsage {
		_, _ = fmt.Fprintf(w, `data: {"id":"chatcmpl-bench0001","object":"chat.completion.chunk","created":1700000000,`+
			`"model":"bench-model-2024-08-06","system_fingerprint":"fp_bench","choices":[],"usage":{"prompt_tokens":412,`+
			`"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},`+
			`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,`+
			`"rejected_prediction_tokens":0}}}`+"\n\n", m.chunks, 412+m.chunks)
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func fixed(contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentType)
		_, _ = io.WriteString(w, body)
	}
}

func runMock(args []string) {
	fs := flag.NewFlagSet("mock", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9100", "listen address")
	chunks := fs.Int("chunks", 20, "content chunks per streamed answer")
	gap := fs.Duration("chunk-gap", 0, "pause between streamed chunks")
	latency := fs.Duration("latency", 0, "pause before answering")
	_ = fs.Parse(args)

	m := &mockServer{chunks: *chunks, chunkGap: *gap, latency: *latency}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", m.chat)
	mux.HandleFunc("/v1/embeddings", fixed("application/json", embeddingBody))
	mux.HandleFunc("/v1/models", fixed("application/json", modelsBody))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			m.chat(w, r)
			return
		}
		http.NotFound(w, r)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("mock upstream listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
