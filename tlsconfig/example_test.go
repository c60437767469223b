package tlsconfig_test

import (
	"log"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/tlsconfig"
)

// A BBS client over mutual TLS, from the files `gavel certs` writes.
func ExampleClient() {
	tc, err := tlsconfig.Client("certs/ca.crt", "certs/client.crt", "certs/client.key", "")
	if err != nil {
		log.Fatal(err)
	}
	bbs, err := client.New(client.Config{Addresses: []string{"127.0.0.1:8889"}, TLS: tc})
	if err != nil {
		log.Fatal(err)
	}
	defer bbs.Close()
}
