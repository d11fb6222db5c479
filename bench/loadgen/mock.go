// The benchmark's mock upstream: an OpenAI-format server (and an Anthropic Messages API one on
// /v1/messages) that answers with fixed, realistic bodies as fast as the machine allows, so that
// it is never the bottleneck.
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
	`"choices":[{"index":0,"message":{"role":"assistant","content":"` + answerText + `","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":412,"completion_tokens":64,"total_tokens":476,` +
	`"prompt_tokens_details":{"cached_tokens":128,"audio_tokens":0},` +
	`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,` +
	`"rejected_prediction_tokens":0}}}`

// The chat answer's text, also the Anthropic message's.
const answerText = `The weather in Paris is mild today with light clouds and a gentle breeze from the west. ` +
	`Temperatures will reach about eighteen degrees in the afternoon, falling to eleven overnight. No rain is ` +
	`expected before the weekend, when a front arrives from the Atlantic.`

// The same answer in Anthropic's Messages API format (non-streaming).
const messageBody = `{"id":"msg_bench0001","type":"message","role":"assistant","model":"bench-model-2024-08-06",` +
	`"content":[{"type":"text","text":"` + answerText + `"}],"stop_reason":"end_turn","stop_sequence":null,` +
	`"usage":{"input_tokens":412,"output_tokens":64,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}`

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
	// slots, when not nil, bounds the answers in progress (a provider at capacity): a request
	// beyond them waits for one, its latency growing with the queue
	slots chan struct{}
	// The Anthropic event stream, precomputed: message_start + content_block_start, one
	// content_block_delta per chunk, then content_block_stop + message_delta + message_stop.
	msgHead   []byte
	msgDeltas [][]byte
	msgTail   []byte
}

func newMockServer(chunks int, chunkGap, latency time.Duration) *mockServer {
	m := &mockServer{chunks: chunks, chunkGap: chunkGap, latency: latency}
	m.msgHead = []byte(`event: message_start` + "\n" + `data: {"type":"message_start","message":{"id":"msg_bench0001",` +
		`"type":"message","role":"assistant","model":"bench-model-2024-08-06","content":[],"stop_reason":null,` +
		`"stop_sequence":null,"usage":{"input_tokens":412,"output_tokens":1,"cache_creation_input_tokens":0,` +
		`"cache_read_input_tokens":0}}}` + "\n\n" +
		`event: content_block_start` + "\n" + `data: {"type":"content_block_start","index":0,` +
		`"content_block":{"type":"text","text":""}}` + "\n\n")
	for i := 0; i < chunks; i++ {
		m.msgDeltas = append(m.msgDeltas, []byte(fmt.Sprintf(`event: content_block_delta`+"\n"+
			`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word%d "}}`+"\n\n", i)))
	}
	m.msgTail = []byte(fmt.Sprintf(`event: content_block_stop`+"\n"+`data: {"type":"content_block_stop","index":0}`+"\n\n"+
		`event: message_delta`+"\n"+`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},`+
		`"usage":{"output_tokens":%d}}`+"\n\n"+
		`event: message_stop`+"\n"+`data: {"type":"message_stop"}`+"\n\n", chunks))
	return m
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
	if m.slots != nil {
		m.slots <- struct{}{}
		defer func() { <-m.slots }()
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

// messages answers like Anthropic's Messages API (POST /v1/messages), with the chat answer's
// content: a `message` object, or with "stream": true its event stream, one text delta per chunk.
func (m *mockServer) messages(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var flags streamFlags
	if err := json.Unmarshal(body, &flags); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"invalid json"}}`)
		return
	}
	if r.Header.Get("x-api-key") == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"x-api-key header is required"}}`)
		return
	}
	if m.latency > 0 {
		time.Sleep(m.latency)
	}
	if !flags.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, messageBody)
		return
	}
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m.msgHead)
	if flusher != nil {
		flusher.Flush()
	}
	for _, delta := range m.msgDeltas {
		if m.chunkGap > 0 {
			time.Sleep(m.chunkGap)
		}
		_, _ = w.Write(delta)
		if flusher != nil {
			flusher.Flush()
		}
	}
	_, _ = w.Write(m.msgTail)
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
	slots := fs.Int("slots", 0, "chat answers in progress at most (0: no bound); the rest wait")
	_ = fs.Parse(args)

	m := newMockServer(*chunks, *gap, *latency)
	if *slots > 0 {
		m.slots = make(chan struct{}, *slots)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", m.chat)
	mux.HandleFunc("/v1/messages", m.messages)
	mux.HandleFunc("/v1/embeddings", fixed("application/json", embeddingBody))
	mux.HandleFunc("/v1/models", fixed("application/json", modelsBody))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			m.chat(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/messages") {
			m.messages(w, r)
			return
		}
		http.NotFound(w, r)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("mock upstream listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
