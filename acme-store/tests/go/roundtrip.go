// Differential oracle for acme-store's Go-compatible reader/writer: decodes each file named on
// the command line into Traefik's v2/v3 store types (pkg/provider/acme, lego v4 registration)
// with encoding/json and writes json.MarshalIndent(data, "", "  ") to <file>.go.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

type Account struct {
	Email        string
	Registration *Resource
	PrivateKey   []byte
	KeyType      string
}

// registration.Resource (lego v4).
type Resource struct {
	Body AcmeAccount `json:"body,omitempty"`
	URI  string      `json:"uri,omitempty"`
}

// acme.Account (lego v4, acme/commons.go).
type AcmeAccount struct {
	Status                 string          `json:"status,omitempty"`
	Contact                []string        `json:"contact,omitempty"`
	TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed,omitempty"`
	Orders                 string          `json:"orders,omitempty"`
	OnlyReturnExisting     bool            `json:"onlyReturnExisting,omitempty"`
	ExternalAccountBinding json.RawMessage `json:"externalAccountBinding,omitempty"`
}

// Account as of Traefik 2.11.51+/3.6.22+/3.7.6+ (lego v5): no KeyType.
type AccountV5 struct {
	Email        string
	Registration *Resource
	PrivateKey   []byte
}

type StoredDataV5 struct {
	Account      *AccountV5
	Certificates []*CertAndStore
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

// Usage: roundtrip [-v5] FILE...
func main() {
	args := os.Args[1:]
	v5 := len(args) > 0 && args[0] == "-v5"
	if v5 {
		args = args[1:]
	}
	for _, name := range args {
		in, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var out []byte
		if v5 {
			var data map[string]*StoredDataV5
			if err = json.Unmarshal(in, &data); err == nil {
				out, err = json.MarshalIndent(data, "", "  ")
			}
		} else {
			var data map[string]*StoredData
			if err = json.Unmarshal(in, &data); err == nil {
				out, err = json.MarshalIndent(data, "", "  ")
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		if err := os.WriteFile(name+".go", out, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
