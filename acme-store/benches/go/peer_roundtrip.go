// Peer for benches/go-peer.sh: times Traefik's own load/save path for acme.json
// (json.Unmarshal into its store types, json.MarshalIndent) on the same file.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

type Account struct {
	Email        string
	Registration *json.RawMessage
	PrivateKey   []byte
	KeyType      string
}

type Domain struct {
	Main string   `json:"main,omitempty"`
	SANs []string `json:"sans,omitempty"`
}

type Certificate struct {
	Domain      Domain `json:"domain,omitempty"`
	Certificate []byte `json:"certificate,omitempty"`
	Key         []byte `json:"key,omitempty"`
}

type CertAndStore struct {
	Certificate
	Store string
}

type StoredData struct {
	Account      *Account
	Certificates []*CertAndStore
}

func main() {
	in, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	n, _ := strconv.Atoi(os.Args[2])
	var data map[string]*StoredData
	start := time.Now()
	for i := 0; i < n; i++ {
		data = nil
		if err := json.Unmarshal(in, &data); err != nil {
			panic(err)
		}
	}
	parse := time.Since(start) / time.Duration(n)
	var out []byte
	start = time.Now()
	for i := 0; i < n; i++ {
		if out, err = json.MarshalIndent(data, "", "  "); err != nil {
			panic(err)
		}
	}
	write := time.Since(start) / time.Duration(n)
	if !bytes.Equal(out, in) {
		panic("Go re-wrote different bytes")
	}
	fmt.Printf("parse_ms=%.2f write_ms=%.2f\n", float64(parse.Microseconds())/1e3, float64(write.Microseconds())/1e3)
}
