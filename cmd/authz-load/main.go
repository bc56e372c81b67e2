package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "authz-load:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("authz-load", flag.ContinueOnError)
	issuer := fs.String("issuer", "http://127.0.0.1:8080", "issuer URL of the server under test (loopback only)")
	id := fs.String("client-id", "", "confidential client allowed the client_credentials grant")
	secret := fs.String("client-secret", "", "its secret")
	mode := fs.String("mode", "client_credentials", "client_credentials, introspect or resource")
	targetURL := fs.String("target", "", "resource mode: the protected URL to GET (loopback only)")
	resource := fs.String("resource", "", "resource to request (default: the server's first)")
	conc := fs.Int("concurrency", 16, "concurrent clients")
	dur := fs.Duration("duration", 10*time.Second, "how long to run (at most 5m)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *secret == "" {
		return errors.New("-client-id and -client-secret are required")
	}
	if *dur <= 0 || *dur > 5*time.Minute {
		return errors.New("-duration must be between 0 and 5m")
	}
	for _, t := range []string{*issuer, *targetURL} {
		if t == "" {
			continue
		}
		u, err := url.Parse(t)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("refusing to load %s: only loopback targets are allowed", u.Host)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2}}
	tokenURL := strings.TrimSuffix(*issuer, "/") + "/oauth2/token"
	ccForm := url.Values{"grant_type": {"client_credentials"}}
	if *resource != "" {
		ccForm.Set("resource", *resource)
	}
	post := func(target string, form url.Values) ([]byte, error) {
		req, _ := http.NewRequest("POST", target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(*id), url.QueryEscape(*secret))
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return body, nil
	}
	get := func(target, token string) error {
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		return nil
	}
	token := func() (string, error) {
		body, err := post(tokenURL, ccForm)
		if err != nil {
			return "", fmt.Errorf("getting a token: %w", err)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		err = json.Unmarshal(body, &tr)
		return tr.AccessToken, err
	}
	var one func() error
	switch *mode {
	case "client_credentials":
		one = func() error { _, err := post(tokenURL, ccForm); return err }
	case "introspect":
		tok, err := token()
		if err != nil {
			return err
		}
		form := url.Values{"token": {tok}}
		target := strings.TrimSuffix(*issuer, "/") + "/oauth2/introspect"
		one = func() error { _, err := post(target, form); return err }
	case "resource":
		if *targetURL == "" {
			return errors.New("resource mode needs -target")
		}
		tok, err := token()
		if err != nil {
			return err
		}
		one = func() error { return get(*targetURL, tok) }
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var errs int
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := one(); err != nil {
					mu.Lock()
					errs++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(float64(len(lat)-1)*p)]
	}
	fmt.Fprintf(out, "mode=%s concurrency=%d duration=%s ok=%d errors=%d rate=%.0f/s p50=%s p99=%s\n",
		*mode, *conc, elapsed.Round(time.Millisecond), len(lat), errs, float64(len(lat))/elapsed.Seconds(), pct(0.50), pct(0.99))
	if firstErr != nil {
		fmt.Fprintln(out, "first error:", firstErr)
	}
	return nil
}
