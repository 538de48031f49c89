package plugin

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// upstream is a TLS origin on loopback; its certificate is trusted through
// SSL_CERT_FILE, set in TestMain before anything loads the system roots.
var upstream *httptest.Server

func TestMain(m *testing.M) {
	upstream = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.RequestURI(), "body": string(body),
			"credential": r.Header.Get(CredentialHeader), "tls": r.TLS != nil,
		})
	}))
	dir, err := os.MkdirTemp("", "warden-sdk-go")
	if err != nil {
		panic(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upstream.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
		panic(err)
	}
	os.Setenv("SSL_CERT_FILE", filepath.Join(dir, "ca.pem"))
	code := m.Run()
	upstream.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seen is one request as the proxy received it.
type seen struct {
	Method string
	Target string
	Header http.Header
	Body   string
}

// proxy is a loopback stand-in for the egress proxy: it records what it
// gets, answers an absolute-form request itself (echoing it), tunnels a
// CONNECT to the TLS upstream, and refuses anything aimed at refused.test
// the way the egress proxy does (403 and the reason header).
type proxy struct {
	addr string
	mu   sync.Mutex
	got  []seen
}

func startProxy(t *testing.T) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Setenv("HTTP_PROXY", "http://"+p.addr)
	return p
}

func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	body, _ := io.ReadAll(req.Body)
	p.mu.Lock()
	p.got = append(p.got, seen{req.Method, req.RequestURI, req.Header, string(body)})
	p.mu.Unlock()
	if strings.HasPrefix(req.Host, "refused.test") {
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\n%s: host_not_allowed\r\nContent-Length: 7\r\nConnection: close\r\n\r\nrefused", EgressReasonHeader)
		return
	}
	if req.Method == http.MethodConnect {
		up, err := net.Dial("tcp", upstream.Listener.Addr().String())
		if err != nil {
			return
		}
		defer up.Close()
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go io.Copy(up, br)
		io.Copy(c, up)
		return
	}
	echo, _ := json.Marshal(map[string]any{"target": req.RequestURI, "credential": req.Header.Get(CredentialHeader), "body": string(body)})
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(echo), echo)
}

func (p *proxy) requests() []seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seen(nil), p.got...)
}

func TestRequestWithCredentialGoesInAbsoluteFormEvenForHTTPS(t *testing.T) {
	p := startProxy(t)
	r, err := Request("https://api.example.test/repos?page=2", &RequestOptions{
		Method: "POST", Body: map[string]int{"n": 1}, Credential: "github",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || !r.OK() || r.EgressReason != "" {
		t.Fatalf("%+v", r)
	}
	var echo map[string]string
	if err := r.JSON(&echo); err != nil {
		t.Fatalf("%q: %v", r.Body, err)
	}
	if echo["target"] != "https://api.example.test/repos?page=2" || echo["credential"] != "github" || echo["body"] != `{"n":1}` {
		t.Fatalf("%v", echo)
	}
	got := p.requests()
	if len(got) != 1 || got[0].Method != "POST" || got[0].Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%+v", got)
	}
}

func TestRequestPlainHTTPGoesInAbsoluteFormWithoutCredential(t *testing.T) {
	p := startProxy(t)
	r, err := Request("http://api.example.test:8080/x", &RequestOptions{Body: "text as is", Header: http.Header{"X-Trace": {"7"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Text() == "" || r.Status != 200 {
		t.Fatalf("%+v", r)
	}
	got := p.requests()
	if len(got) != 1 || got[0].Target != "http://api.example.test:8080/x" || got[0].Body != "text as is" {
		t.Fatalf("%+v", got)
	}
	if _, named := got[0].Header[CredentialHeader]; named || got[0].Header.Get("X-Trace") != "7" {
		t.Fatalf("%v", got[0].Header)
	}
}

func TestRequestHTTPSWithoutCredentialTunnelsWithTLSEndToEnd(t *testing.T) {
	p := startProxy(t)
	r, err := Request("https://127.0.0.1:9/path?q=1", &RequestOptions{Method: "PUT", Body: []byte("raw")})
	if err != nil {
		t.Fatal(err)
	}
	var echo map[string]any
	if err := r.JSON(&echo); err != nil {
		t.Fatalf("%q: %v", r.Body, err)
	}
	if echo["tls"] != true || echo["method"] != "PUT" || echo["path"] != "/path?q=1" || echo["body"] != "raw" || echo["credential"] != "" {
		t.Fatalf("%v", echo)
	}
	got := p.requests()
	if len(got) != 1 || got[0].Method != "CONNECT" || got[0].Target != "127.0.0.1:9" {
		t.Fatalf("%+v", got)
	}
}

func TestRequestTunnelRejectsAnUntrustedCertificate(t *testing.T) {
	startProxy(t)
	// The upstream's certificate is for 127.0.0.1 and example.com only.
	_, err := Request("https://elsewhere.test/", nil)
	if err == nil || !strings.Contains(err.Error(), "TLS with elsewhere.test") {
		t.Fatalf("%v", err)
	}
}

func TestRequestRefusalIsAResponse(t *testing.T) {
	startProxy(t)
	for _, c := range []struct {
		url        string
		credential string
	}{
		{"https://refused.test/", ""},
		{"https://refused.test/", "github"},
		{"http://refused.test/", ""},
	} {
		r, err := Request(c.url, &RequestOptions{Credential: c.credential})
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if r.Status != 403 || r.OK() || r.EgressReason != "host_not_allowed" || r.Text() != "refused" {
			t.Fatalf("%v: %+v", c, r)
		}
	}
}

func TestRequestWithoutNetworkIsNetworkUnavailable(t *testing.T) {
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("http_proxy", "")
	_, err := Request("https://api.example.test/", &RequestOptions{Credential: "github"})
	var pe *Error
	if !errors.As(err, &pe) || pe.Type != "NetworkUnavailable" {
		t.Fatalf("%v", err)
	}
}

func TestRequestRejectsBadInput(t *testing.T) {
	startProxy(t)
	for _, u := range []string{"ftp://x.test/", "/relative", "https://", "::"} {
		if _, err := Request(u, nil); err == nil || !strings.Contains(err.Error(), "absolute http:// or https:// URL") {
			t.Fatalf("%q: %v", u, err)
		}
	}
	if _, err := Request("http://x.test/", &RequestOptions{Body: func() {}}); err == nil || !strings.Contains(err.Error(), "body") {
		t.Fatalf("%v", err)
	}
	t.Setenv("HTTP_PROXY", "::")
	if _, err := Request("http://x.test/", nil); err == nil || !strings.Contains(err.Error(), "HTTP_PROXY") {
		t.Fatalf("%v", err)
	}
}
