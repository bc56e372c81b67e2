package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// postIntrospection sends one RFC 7662 request, authenticating with
// client_secret_basic (RFC 6749 §2.3.1: id and secret form-encoded first).
// Anything but a well-formed 200 is ErrUnavailable: the token may be fine,
// so it must not be answered as invalid.
func (v *Validator) postIntrospection(ctx context.Context, raw string) (introspection, []byte, error) {
	var resp introspection
	caller := ctx
	endpoint, err := v.disc.introspectionURL(ctx)
	if err != nil {
		v.logFailure(caller, "middleware: cannot find the introspection endpoint", "issuer", v.cfg.Issuer, "cause", err)
		return resp, nil, unavailable("the authorization server cannot be reached")
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return resp, nil, unavailable("the introspection endpoint is not a valid URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(v.cfg.ClientID), url.QueryEscape(v.cfg.ClientSecret))
	r, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		v.logFailure(caller, "middleware: introspection failed", "endpoint", endpoint, "cause", err)
		return resp, nil, unavailable("the authorization server cannot be reached")
	}
	defer r.Body.Close()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDocument))
	if err != nil || r.StatusCode != http.StatusOK {
		// 401 here means this service's own credentials are wrong: a
		// configuration problem, logged, never blamed on the caller's token.
		v.cfg.Logger.Warn("middleware: introspection failed", "endpoint", endpoint, "status", r.StatusCode)
		return resp, nil, unavailable("the authorization server cannot be reached")
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		v.cfg.Logger.Warn("middleware: introspection answer is not JSON", "endpoint", endpoint)
		return resp, nil, unavailable("the authorization server gave a malformed answer")
	}
	return resp, body, nil
}

// logFailure logs a failed call to the authorization server at WARN, or
// at DEBUG when the request it served was cancelled (its client hung up,
// as an MCP client does when it closes an event stream): that failure is
// the caller's leaving, not the authorization server's fault, and an
// operator alerting on WARN lines must not be woken by it.
func (v *Validator) logFailure(caller context.Context, msg string, args ...any) {
	if errors.Is(caller.Err(), context.Canceled) {
		v.cfg.Logger.Debug(msg, args...)
		return
	}
	v.cfg.Logger.Warn(msg, args...)
}
