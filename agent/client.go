package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
)

// Client talks to a running agent over its control socket. It is what the
// fulcrum CLI uses; it holds no state beyond the socket path.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	c := &Client{socket: socket}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, &UnreachableError{Socket: socket, Err: err}
			}
			return conn, nil
		},
		DisableKeepAlives: true,
	}}
	return c
}

// Socket is the path the client connects to.
func (c *Client) Socket() string { return c.socket }

// UnreachableError means nothing accepted a connection on the socket.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	if errors.Is(e.Err, fs.ErrPermission) {
		return fmt.Sprintf("cannot reach fulcrum agent at %s: permission denied (the control socket is root-only)", e.Socket)
	}
	return fmt.Sprintf("cannot reach fulcrum agent at %s: is it running? (%v)", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// APIError is an error answer of the control API.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	return c.doBody(ctx, method, path, nil)
}

func (c *Client) doBody(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://fulcrum"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return nil, ue
		}
		return nil, fmt.Errorf("control API %s %s: %w", method, path, err)
	}
	return resp, nil
}

// get performs a request and returns the body of a 2xx answer (or of one of
// the extra accepted codes); other answers become *APIError.
func (c *Client) get(ctx context.Context, method, path string, accept ...int) ([]byte, int, error) {
	resp, err := c.do(ctx, method, path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("control API %s %s: %w", method, path, err)
	}
	ok := resp.StatusCode/100 == 2
	for _, code := range accept {
		ok = ok || resp.StatusCode == code
	}
	if !ok {
		return nil, resp.StatusCode, apiError(resp.StatusCode, body)
	}
	return body, resp.StatusCode, nil
}

func apiError(code int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &APIError{StatusCode: code, Message: msg}
}

// StatusJSON returns the raw JSON of GET /v1/status.
func (c *Client) StatusJSON(ctx context.Context) ([]byte, error) {
	body, _, err := c.get(ctx, http.MethodGet, "/v1/status")
	return body, err
}

// Status returns the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	body, err := c.StatusJSON(ctx)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decoding status: %w", err)
	}
	return &st, nil
}

// Version returns the agent's build information.
func (c *Client) Version(ctx context.Context) (*VersionInfo, error) {
	body, _, err := c.get(ctx, http.MethodGet, "/v1/version")
	if err != nil {
		return nil, err
	}
	var v VersionInfo
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("decoding version: %w", err)
	}
	return &v, nil
}

// Reload asks the agent to reload its config. A rejected reload is not an
// error: the answer has OK false with Error and Diagnostics.
func (c *Client) Reload(ctx context.Context) (*ReloadResponse, error) {
	body, _, err := c.get(ctx, http.MethodPost, "/v1/reload",
		http.StatusUnprocessableEntity, http.StatusInternalServerError, http.StatusServiceUnavailable)
	if err != nil {
		return nil, err
	}
	var r ReloadResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding reload answer: %w", err)
	}
	return &r, nil
}

// Events streams GET /v1/events, calling fn with each JSON line (without the
// newline) as it arrives. It returns nil when the agent ends the stream,
// ctx.Err() when ctx is done, or fn's error.
func (c *Client) Events(ctx context.Context, fn func(line []byte) error) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/events")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return apiError(resp.StatusCode, body)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return nil
}

// Failover asks the agent for a VRRP failover drill. A drill that ran is
// not an error even if it failed: see FailoverResponse.OK and the results.
func (c *Client) Failover(ctx context.Context, req FailoverRequest) (*FailoverResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.doBody(ctx, http.MethodPost, "/v1/vrrp/failover", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("control API POST /v1/vrrp/failover: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp.StatusCode, raw)
	}
	var r FailoverResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decoding failover answer: %w", err)
	}
	return &r, nil
}
