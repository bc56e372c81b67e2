package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/authzd/authz/internal/testclock"
	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
)

// Table tests for the pure helpers the flows are built from, where the
// logic lives; tests/ covers the same rules over HTTP.

func oauthCode(err error) string {
	var oe *oauth.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     []string
		ok       bool
	}{
		{"empty", "", nil, true},
		{"one", "read", []string{"read"}, true},
		{"order kept, repeats dropped", "write read write", []string{"write", "read"}, true},
		{"extra spaces", "  read   write ", []string{"read", "write"}, true},
		{"URL-like scope token", "https://api.example.com/read", []string{"https://api.example.com/read"}, true},
		{"double quote is not a scope-token character", `re"ad`, nil, false},
		{"backslash", `re\ad`, nil, false},
		{"tab is not a separator", "read\twrite", nil, false},
		{"non-ASCII", "lire×", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseScope(tc.in)
			if ok != tc.ok || !slices.Equal(got, tc.want) {
				t.Fatalf("parseScope(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestNarrowScopes(t *testing.T) {
	t.Parallel()
	granted := []string{"read", "write"}
	for _, tc := range []struct {
		name, scope string
		sent        bool
		want        []string
		code        string
	}{
		{"not sent: all granted", "", false, granted, ""},
		{"narrower", "read", true, []string{"read"}, ""},
		{"same, reordered", "write read", true, []string{"write", "read"}, ""},
		{"wider", "read admin", true, nil, oauth.CodeInvalidScope},
		{"malformed", `read "`, true, nil, oauth.CodeInvalidScope},
		{"sent empty: nothing to narrow to", "", true, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := (&Server{}).narrowScopes(granted, tc.scope, tc.sent)
			if oauthCode(err) != tc.code || !slices.Equal(got, tc.want) {
				t.Fatalf("narrowScopes(%q, %v) = %q, %v; want %q, %s", tc.scope, tc.sent, got, err, tc.want, tc.code)
			}
		})
	}
}

func TestNarrowResources(t *testing.T) {
	t.Parallel()
	authorized := []string{"https://api.example.com", "https://mcp.example.com/mcp"}
	for _, tc := range []struct {
		name      string
		requested []string
		want      []string
		code      string
	}{
		{"none requested: all authorized", nil, authorized, ""},
		{"one", []string{"https://mcp.example.com/mcp"}, []string{"https://mcp.example.com/mcp"}, ""},
		{"normalised before the comparison", []string{"HTTPS://MCP.example.com:443/mcp/"}, []string{"https://mcp.example.com/mcp"}, ""},
		{"duplicates collapse", []string{"https://api.example.com", "https://api.example.com/"}, []string{"https://api.example.com"}, ""},
		{"another path is another resource", []string{"https://mcp.example.com/other"}, nil, oauth.CodeInvalidTarget},
		{"not authorized", []string{"https://evil.example"}, nil, oauth.CodeInvalidTarget},
		{"relative", []string{"/mcp"}, nil, oauth.CodeInvalidTarget},
		{"fragment", []string{"https://api.example.com#x"}, nil, oauth.CodeInvalidTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := narrowResources(authorized, tc.requested)
			if oauthCode(err) != tc.code || !slices.Equal(got, tc.want) {
				t.Fatalf("narrowResources(%q) = %q, %v; want %q, %s", tc.requested, got, err, tc.want, tc.code)
			}
		})
	}
}

func TestRedirectMatchesCode(t *testing.T) {
	t.Parallel()
	one := store.Client{Metadata: store.ClientMetadata{RedirectURIs: []string{"https://app.example/cb"}}}
	two := store.Client{Metadata: store.ClientMetadata{RedirectURIs: []string{"https://app.example/cb", "https://app.example/cb2"}}}
	for _, tc := range []struct {
		name              string
		sent, atAuthorize string
		c                 store.Client
		want              bool
	}{
		{"repeated exactly", "https://app.example/cb", "https://app.example/cb", one, true},
		{"omitted although sent at authorize", "", "https://app.example/cb", one, false},
		{"different", "https://app.example/cb2", "https://app.example/cb", two, false},
		{"loopback port must repeat exactly", "http://127.0.0.1:2/cb", "http://127.0.0.1:1/cb", one, false},
		{"not sent at authorize, omitted", "", "", one, true},
		{"not sent at authorize, the one registered", "https://app.example/cb", "", one, true},
		{"not sent at authorize, two registered", "https://app.example/cb", "", two, false},
		{"not sent at authorize, unregistered", "https://evil.example/cb", "", one, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := redirectMatchesCode(tc.sent, tc.atAuthorize, tc.c); got != tc.want {
				t.Fatalf("redirectMatchesCode(%q, %q) = %v, want %v", tc.sent, tc.atAuthorize, got, tc.want)
			}
		})
	}
}

func TestSafeReturnTo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, issuerPath, in, want string
	}{
		{"empty", "", "", "/account/apps"},
		{"local path", "", "/oauth2/authorize?client_id=x", "/oauth2/authorize?client_id=x"},
		{"absolute URL", "", "https://evil.example/", "/account/apps"},
		{"scheme-relative", "", "//evil.example/", "/account/apps"},
		{"backslash", "", `/\evil.example`, "/account/apps"},
		{"tab that browsers drop", "", "/\t/evil.example", "/account/apps"},
		{"CRLF", "", "/x\r\nLocation: https://evil.example", "/account/apps"},
		{"javascript", "", "javascript:alert(1)", "/account/apps"},
		{"under the issuer path", "/tenant", "/tenant/oauth2/authorize", "/tenant/oauth2/authorize"},
		{"outside the issuer path", "/tenant", "/other/x", "/tenant/account/apps"},
		{"prefix of the issuer path is not under it", "/tenant", "/tenantx/x", "/tenant/account/apps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &Server{issuerPath: tc.issuerPath}
			if got := s.safeReturnTo(tc.in); got != tc.want {
				t.Fatalf("safeReturnTo(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	salt := bytes.Repeat([]byte{7}, argonSaltLen)
	h, err := HashPassword("correct horse", bytes.NewReader(salt))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := HashPassword("", bytes.NewReader(salt)); err == nil {
		t.Fatal("HashPassword accepted an empty password")
	}
	if _, err := HashPassword("x", bytes.NewReader(nil)); err == nil {
		t.Fatal("HashPassword without randomness succeeded")
	}
	parts := strings.Split(h, "$")
	// A hash an earlier release made (m = 32 MiB, p = 2) still verifies:
	// the parameters are read from the hash, not from the constants.
	oldKey := argon2.IDKey([]byte("correct horse"), salt, 2, 32*1024, 2, argonKeyLen)
	old := fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, 32*1024, 2, 2,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(oldKey))
	for _, tc := range []struct {
		name, encoded, password string
		want                    bool
	}{
		{"right password", h, "correct horse", true},
		{"wrong password", h, "correct horsE", false},
		{"empty password", h, "", false},
		{"not argon2id", strings.Replace(h, "argon2id", "argon2i", 1), "correct horse", false},
		{"other version", strings.Replace(h, fmt.Sprintf("v=%d", argon2.Version), "v=16", 1), "correct horse", false},
		{"bad parameters", strings.Join(append(slices.Clone(parts[:3]), "m=x", parts[4], parts[5]), "$"), "correct horse", false},
		{"bad salt", strings.Join(append(slices.Clone(parts[:4]), "!!", parts[5]), "$"), "correct horse", false},
		{"empty key", strings.Join(append(slices.Clone(parts[:5]), ""), "$"), "correct horse", false},
		{"truncated", strings.Join(parts[:5], "$"), "correct horse", false},
		{"garbage", "plaintext", "plaintext", false},
		{"the dummy hash matches nothing", dummyHash, "", false},
		{"earlier release's parameters", old, "correct horse", true},
		{"earlier release's parameters, wrong password", old, "correct horsE", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := checkPassword(context.Background(), tc.encoded, tc.password)
			if err != nil || got != tc.want {
				t.Fatalf("checkPassword = %v, %v, want %v", got, err, tc.want)
			}
		})
	}
	// The dummy hash costs what a real one does: same parameters, salt and
	// key sizes, so an unknown account is not told apart by timing.
	dummy := strings.Split(dummyHash, "$")
	if !slices.Equal(dummy[:4], parts[:4]) || len(dummy[4]) != len(parts[4]) || len(dummy[5]) != len(parts[5]) {
		t.Fatalf("dummyHash %q does not have the parameters of %q", dummyHash, h)
	}
}

// TestPasswordHashingIsBounded: every argon2id computation holds a slot, so
// a burst of sign-in attempts cannot hold more than cap(argonSlots) × 19 MiB;
// one that finds no free slot in time is an outage-class error (503 with
// Retry-After), never a hash and never a "wrong password". Not parallel: it
// takes every slot of the process.
func TestPasswordHashingIsBounded(t *testing.T) {
	if cap(argonSlots) < 1 {
		t.Fatalf("argonSlots has capacity %d", cap(argonSlots))
	}
	for range cap(argonSlots) {
		argonSlots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ran := false
	err := withArgonSlot(ctx, func() { ran = true })
	if !errors.Is(err, store.ErrUnavailable) || ran {
		t.Fatalf("with every slot taken: err %v, ran %v; want ErrUnavailable and no hashing", err, ran)
	}
	ok, err := checkPassword(ctx, dummyHash, "x")
	if !errors.Is(err, store.ErrUnavailable) || ok {
		t.Fatalf("checkPassword with every slot taken: %v, %v", ok, err)
	}
	<-argonSlots // one slot frees up: the next check runs
	ok, err = checkPassword(context.Background(), dummyHash, "x")
	if err != nil || ok {
		t.Fatalf("checkPassword with a free slot: %v, %v", ok, err)
	}
	if len(argonSlots) != cap(argonSlots)-1 {
		t.Fatalf("checkPassword did not give its slot back: %d of %d taken", len(argonSlots), cap(argonSlots))
	}
	for range cap(argonSlots) - 1 {
		<-argonSlots
	}
}

func TestLoginLimiter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := &loginLimiter{st: memory.New(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), perAccount: 3, perIP: 5, window: 15 * time.Minute}
	type step struct {
		do           string // "fail", "succeed", "advance"
		account, ip  string
		d            time.Duration
		blockAccount string // after the step: is an attempt (account, ip) refused?
		blockIP      string
		blocked      bool
		waitAtLeast  time.Duration
	}
	for i, st := range []step{
		{do: "fail", account: "alice", ip: "1.1.1.1", blockAccount: "alice", blockIP: "1.1.1.1", blocked: false},
		{do: "fail", account: "alice", ip: "1.1.1.1", blockAccount: "alice", blockIP: "1.1.1.1", blocked: false},
		{do: "fail", account: "alice", ip: "1.1.1.1", blockAccount: "alice", blockIP: "1.1.1.1", blocked: true, waitAtLeast: 14 * time.Minute},
		// The same account from another address is not locked out.
		{do: "none", blockAccount: "alice", blockIP: "2.2.2.2", blocked: false},
		// Another account from the locked address is not either (until the per-IP limit).
		{do: "none", blockAccount: "bob", blockIP: "1.1.1.1", blocked: false},
		{do: "fail", account: "bob", ip: "1.1.1.1", blockAccount: "bob", blockIP: "1.1.1.1", blocked: false},
		{do: "fail", account: "carol", ip: "1.1.1.1", blockAccount: "dave", blockIP: "1.1.1.1", blocked: true},
		// A success clears the account's failures, not the address's.
		{do: "succeed", account: "alice", ip: "3.3.3.3", blockAccount: "alice", blockIP: "3.3.3.3", blocked: false},
		{do: "none", blockAccount: "erin", blockIP: "1.1.1.1", blocked: true},
		// The window ends and with it every lockout.
		{do: "advance", d: 15 * time.Minute, blockAccount: "erin", blockIP: "1.1.1.1", blocked: false},
	} {
		now := clk.Now()
		begin := func(account, ip string) *loginAttempt {
			a, _, err := l.attempt(ctx, account, limitNets(netip.MustParseAddr(ip)), now)
			if err != nil || a == nil {
				t.Fatalf("step %d: attempt(%s@%s) = %v, %v; want it counted", i, account, ip, a, err)
			}
			return a
		}
		switch st.do {
		case "fail":
			begin(st.account, st.ip).failed()
		case "succeed":
			if err := begin(st.account, st.ip).succeeded(ctx); err != nil {
				t.Fatal(err)
			}
		case "advance":
			clk.Advance(st.d)
		}
		// The probe is an attempt whose password is never checked: taken
		// back when it is let through, so it changes no count.
		a, wait, err := l.attempt(ctx, st.blockAccount, limitNets(netip.MustParseAddr(st.blockIP)), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		blocked := a == nil
		if a != nil {
			a.abandon(ctx)
		}
		if blocked != st.blocked || wait < st.waitAtLeast || (blocked != (wait > 0)) {
			t.Fatalf("step %d (%s %s@%s): blocked(%s@%s) = %v, %s; want %v, at least %s",
				i, st.do, st.account, st.ip, st.blockAccount, st.blockIP, blocked, wait, st.blocked, st.waitAtLeast)
		}
	}
}

// TestAllowedGrantDefault: a client whose metadata names no grant types
// may use exactly what registration would have given it (RFC 7591 §2:
// authorization_code only). The token endpoint used to read an empty list
// as authorization_code plus refresh_token.
func TestAllowedGrantDefault(t *testing.T) {
	t.Parallel()
	var registered dcr.Metadata
	registered.RedirectURIs = []string{"https://app.example/cb"}
	if err := registered.Normalize(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(registered.GrantTypes, oauth.DefaultGrantTypes) {
		t.Fatalf("registration default %q, want %q", registered.GrantTypes, oauth.DefaultGrantTypes)
	}
	empty := store.Client{}
	for _, gt := range oauth.GrantTypes {
		if got, want := allowedGrant(empty, gt), slices.Contains(registered.GrantTypes, gt); got != want {
			t.Errorf("allowedGrant(no grant types, %s) = %v, registration gives %v", gt, got, want)
		}
	}
	listed := store.Client{Metadata: store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}}}
	if !allowedGrant(listed, oauth.GrantClientCredentials) || allowedGrant(listed, oauth.GrantAuthorizationCode) {
		t.Error("allowedGrant does not follow the listed grant types")
	}
}

// TestUnavailableCause: a 503 from this process's own full slots (a sign-in
// or fetch flood) is counted as "busy", and one from a client's host that
// could not be reached as "client_host" (even when it timed out), not as
// the store's failure, though all are outage-class errors; a deadline is
// "timeout" even when wrapped.
func TestUnavailableCause(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want string
	}{
		{errHashBusy, causeBusy},
		{fmt.Errorf("sign-in: %w", errHashBusy), causeBusy},
		{errFetchBusy, causeBusy},
		{fmt.Errorf("client document: %w", errFetchBusy), causeBusy},
		{fmt.Errorf("%w: connection refused", store.ErrUnavailable), causeStore},
		{fmt.Errorf("%w: %w", errFetch, &unreachable{errors.New("answered 503, not 200")}), causeClientHost},
		{fmt.Errorf("%w: %w", errFetch, &unreachable{fmt.Errorf("get: %w", context.DeadlineExceeded)}), causeClientHost},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), causeTimeout},
		{errors.New("something else"), causeOther},
	} {
		if got := unavailableCause(c.err); got != c.want {
			t.Errorf("unavailableCause(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
