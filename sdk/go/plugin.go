// Package plugin runs a typed handler as a Warden native plugin: the event
// arrives as JSON on stdin, the result leaves as JSON on stdout, and an
// error leaves as {"error": {"type": ..., "message": ...}} with exit code 1,
// which the platform reports with that type and message.
//
//	func main() {
//		plugin.Run(func(in Input) (Output, error) {
//			if in.Name == "" {
//				return Output{}, plugin.Errorf("ValidationError", "name is required")
//			}
//			return Output{Message: "Hello, " + in.Name + "!"}, nil
//		})
//	}
//
// Request sends an HTTP request through the platform's egress proxy, naming
// a platform-held credential the plugin never sees:
//
//	r, err := plugin.Request("https://api.github.com/user", &plugin.RequestOptions{Credential: "github"})
//
// Standard library only. `warden plugin pack` vendors this module into a
// package whose go.mod requires warden.dev/sdk.
package plugin

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Version of this SDK.
const Version = "0.1.0"

// Error is an error with a type of the plugin's choosing.
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Errorf makes an Error of type typ.
func Errorf(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// MaxEventBytes is the largest event Run reads.
const MaxEventBytes = 64 << 20

// Run reads the event from stdin, calls handle, writes the result to stdout
// and exits: 0 on success, 1 on error.
func Run[In any, Out any](handle func(In) (Out, error)) {
	os.Exit(RunIO(handle, os.Stdin, os.Stdout))
}

// RunIO is Run on any reader and writer; it returns the exit code (for tests).
func RunIO[In any, Out any](handle func(In) (Out, error), r io.Reader, w io.Writer) int {
	data, err := io.ReadAll(io.LimitReader(r, MaxEventBytes+1))
	if err != nil {
		return fail(w, "ReadError", "reading the event: "+err.Error())
	}
	if len(data) > MaxEventBytes {
		return fail(w, "InvalidEvent", fmt.Sprintf("the event is over %d bytes", MaxEventBytes))
	}
	var in In
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&in); err != nil {
		return fail(w, "InvalidEvent", "the event does not fit the handler's input type: "+err.Error())
	}
	out, err := call(handle, in)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return fail(w, pe.Type, pe.Message)
		}
		return fail(w, "HandlerError", err.Error())
	}
	enc, err := json.Marshal(out)
	if err != nil {
		return fail(w, "ResultNotSerializable", err.Error())
	}
	enc = append(enc, '\n')
	if _, err := w.Write(enc); err != nil {
		return 1
	}
	return 0
}

// call runs handle, turning a panic into an error.
func call[In any, Out any](handle func(In) (Out, error), in In) (out Out, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Type: "Panic", Message: fmt.Sprint(p)}
		}
	}()
	return handle(in)
}

func fail(w io.Writer, typ, message string) int {
	doc, _ := json.Marshal(map[string]*Error{"error": {Type: typ, Message: message}})
	w.Write(append(doc, '\n'))
	return 1
}

// CredentialHeader names the platform-held credential the egress proxy
// injects; the proxy removes it before the request leaves the host.
const CredentialHeader = "X-Warden-Credential"

// EgressReasonHeader is where the egress proxy says why it refused a request.
const EgressReasonHeader = "X-Warden-Egress-Reason"

// RequestOptions are Request's optional parts; the zero value is a GET
// without a body or credential and a 30 s timeout.
type RequestOptions struct {
	// Method, GET when empty.
	Method string
	// Header to send (Host and the credential header are set by Request).
	Header http.Header
	// Body: nil for none, []byte or string as is, any other value as JSON
	// (with Content-Type application/json unless Header sets one).
	Body any
	// Credential names a credential the version declares in
	// permissions.credentials: the proxy puts the secret into the request
	// and opens the connection itself, TLS included for https://.
	Credential string
	// Timeout for the whole exchange, 30 s when zero.
	Timeout time.Duration
}

// Response is what Request got back.
type Response struct {
	// Status code.
	Status int
	// Header of the answer.
	Header http.Header
	// Body, read whole.
	Body []byte
	// EgressReason is set when the platform's proxy refused the request
	// (and says why), empty otherwise.
	EgressReason string
}

// OK tells whether the status is 2xx.
func (r *Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Text is the body as text.
func (r *Response) Text() string { return string(r.Body) }

// JSON decodes the body into v.
func (r *Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Request sends an HTTP request from a plugin through the platform's egress
// proxy (the box's HTTP_PROXY) and returns its Response.
//
// rawURL must be an absolute http:// or https:// URL on a host the version
// declares in permissions.network. With a credential, or for http://, the
// request goes to the proxy in absolute form and the proxy opens the
// connection; without a credential an https:// request goes through a
// CONNECT tunnel, TLS end to end. A refusal by the proxy is a Response too
// (403, EgressReason set), not an error. With no network at all (no
// HTTP_PROXY) the error is an *Error of type NetworkUnavailable.
func Request(rawURL string, opts *RequestOptions) (*Response, error) {
	if opts == nil {
		opts = &RequestOptions{}
	}
	proxy := os.Getenv("HTTP_PROXY")
	if proxy == "" {
		proxy = os.Getenv("http_proxy")
	}
	if proxy == "" {
		return nil, Errorf("NetworkUnavailable", "this plugin version has no network: declare the host in permissions.network")
	}
	target, err := url.Parse(rawURL)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Hostname() == "" {
		return nil, fmt.Errorf("url %q: give an absolute http:// or https:// URL", rawURL)
	}
	via, err := url.Parse(proxy)
	if err != nil || via.Hostname() == "" {
		return nil, fmt.Errorf("HTTP_PROXY %q: not a proxy URL", proxy)
	}
	proxyAddr := via.Host
	if via.Port() == "" {
		proxyAddr = net.JoinHostPort(via.Hostname(), "80")
	}
	method := opts.Method
	if method == "" {
		method = http.MethodGet
	}
	header := opts.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	var body []byte
	switch b := opts.Body.(type) {
	case nil:
	case []byte:
		body = b
	case string:
		body = []byte(b)
	default:
		body, err = json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("body: cannot be sent as JSON: %w", err)
		}
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/json")
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("tcp", proxyAddr, timeout)
	if err != nil {
		return nil, fmt.Errorf("reaching the egress proxy at %s: %w", proxyAddr, err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	req, err := http.NewRequest(method, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("method %q: %w", method, err)
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	req.Header = header
	req.Close = true
	if opts.Credential != "" || target.Scheme == "http" {
		// Absolute form to the proxy over plain HTTP: the proxy opens the
		// connection (TLS for https://) and injects the credential.
		if opts.Credential != "" {
			req.Header.Set(CredentialHeader, opts.Credential)
		}
		if err := req.WriteProxy(conn); err != nil {
			return nil, fmt.Errorf("sending to the egress proxy: %w", err)
		}
		return readResponse(bufio.NewReader(conn), req)
	}
	// No credential: a CONNECT tunnel, TLS end to end.
	port := target.Port()
	if port == "" {
		port = "443"
	}
	authority := net.JoinHostPort(target.Hostname(), port)
	connect := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: authority}, Host: authority, Header: http.Header{}}
	if err := connect.Write(conn); err != nil {
		return nil, fmt.Errorf("sending CONNECT to the egress proxy: %w", err)
	}
	br := bufio.NewReader(conn)
	answer, err := http.ReadResponse(br, connect)
	if err != nil {
		return nil, fmt.Errorf("reading the egress proxy's answer to CONNECT: %w", err)
	}
	if answer.StatusCode != http.StatusOK {
		// The proxy's refusal, answered like any response.
		r, err := collect(answer)
		if err != nil {
			return nil, err
		}
		if r.EgressReason == "" {
			r.EgressReason = "refused"
		}
		return r, nil
	}
	if br.Buffered() > 0 {
		return nil, errors.New("the egress proxy sent data before the TLS handshake")
	}
	secure := tls.Client(conn, &tls.Config{ServerName: target.Hostname()})
	if err := secure.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS with %s: %w", target.Host, err)
	}
	if err := req.Write(secure); err != nil {
		return nil, fmt.Errorf("sending to %s: %w", target.Host, err)
	}
	return readResponse(bufio.NewReader(secure), req)
}

func readResponse(r *bufio.Reader, req *http.Request) (*Response, error) {
	res, err := http.ReadResponse(r, req)
	if err != nil {
		return nil, fmt.Errorf("reading the answer from %s: %w", req.URL.Host, err)
	}
	return collect(res)
}

func collect(res *http.Response) (*Response, error) {
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	return &Response{
		Status:       res.StatusCode,
		Header:       res.Header,
		Body:         body,
		EgressReason: strings.TrimSpace(res.Header.Get(EgressReasonHeader)),
	}, nil
}
