// Peer (c) of benchmarks/ingest.py: net/http + franz-go, the key checked, JSON parsed, 200 after acks=all.
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	var routes map[string][2]string // "product/event_type" → [topic, key field] (PEER_ROUTES, from the harness)
	if err := json.Unmarshal([]byte(os.Getenv("PEER_ROUTES")), &routes); err != nil {
		log.Fatalf("PEER_ROUTES: %v", err)
	}
	key := []byte(os.Getenv("PEER_KEY"))
	lingerMs, err := strconv.Atoi(os.Getenv("PEER_LINGER_MS")) // hookstream's HOOKSTREAM_KAFKA_LINGER_MS
	if err != nil {
		log.Fatalf("PEER_LINGER_MS: %v", err)
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("PEER_BOOTSTRAP"), ",")...),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Duration(lingerMs)*time.Millisecond)) // idempotent by default
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	http.HandleFunc("POST /webhooks/cryptomate", func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Webhook-Key")), key) != 1 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var doc map[string]any
		if err != nil || json.Unmarshal(body, &doc) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		product, _ := doc["product"].(string)
		if product == "" {
			product, _ = doc["operation"].(string)
		}
		event, _ := doc["event_type"].(string)
		if event == "" {
			event, _ = doc["sub_operation"].(string)
		}
		rt, ok := routes[strings.ToLower(product)+"/"+strings.ToLower(event)]
		data, _ := doc["data"].(map[string]any)
		if !ok || data == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rec := &kgo.Record{Topic: rt[0], Key: []byte(fmt.Sprint(data[rt[1]])), Value: body}
		if err := client.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"response_code":"OK"}`))
	})
	if err := client.Ping(context.Background()); err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Args[1], nil))
}
