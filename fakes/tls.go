package fakes

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	caOnce sync.Once
	caCert *x509.Certificate
)

// tlsCert returns the certificate every httptest TLS server presents (Go's
// built-in test certificate: self-signed, IsCA, SANs 127.0.0.1, ::1 and
// example.com).
func tlsCert() *x509.Certificate {
	caOnce.Do(func() {
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.StartTLS()
		caCert = srv.Certificate()
		srv.Close()
	})
	return caCert
}

// CAPEM returns the PEM of the certificate the TLS fakes (Entra, Graph)
// present. It is its own trust root.
func CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsCert().Raw})
}

// WriteCAFile writes CAPEM to dir/ca.pem and returns the path, suitable for
// SSL_CERT_FILE of a child process (Go's TLS then trusts only that file).
func WriteCAFile(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, CAPEM(), 0o644); err != nil {
		t.Fatalf("fakes: write CA file: %v", err)
	}
	return p
}

// CertPool returns a pool holding only the fakes' certificate.
func CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(tlsCert())
	return p
}

// TLSClient returns an HTTP client that trusts the TLS fakes (for in-process
// use, e.g. as an azcore transport).
func TLSClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: CertPool(), MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}
}

// newTLSServer starts an httptest TLS server on 127.0.0.1 with httptest's
// built-in certificate.
func newTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	return srv
}
