package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// result is one HTTP (or SQL) exchange as the recorder sees it.
type result struct {
	status int // 0: no answer (transport error)
	body   []byte
	err    error
	tok    tokenAnswer // a token endpoint answer's tokens, decoded once (by ccToken and tokenPair)
}

// outcome classifies r: "" for success, else "STATUS oauth_error_code" (RFC
// 6749 §5.2) or "transport".
func (r result) outcome() string {
	if r.err != nil && r.status == 0 {
		return "transport"
	}
	if r.status == 200 && r.err == nil {
		return ""
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	if r.err != nil && e.Error == "" {
		e.Error = r.err.Error() // a failed check on a 200, e.g. "inactive"
	}
	if e.Error == "" {
		e.Error = "-"
	}
	return fmt.Sprintf("%d %s", r.status, e.Error)
}

// recorder collects one worker's measurements; workers never share one,
// so recording costs no lock on the measured path.
type recorder struct {
	lat    []time.Duration
	errors map[string]int // outcome → count
	status map[int]int    // every timed answer by HTTP status (0 = none)
	notes  map[string]int // flow-specific counts (pair rounds, restarts, …)
}

func newRecorder() *recorder {
	return &recorder{errors: map[string]int{}, status: map[int]int{}, notes: map[string]int{}}
}

// timed runs f, records its latency if it succeeded and its outcome
// otherwise, and reports success.
func (rec *recorder) timed(f func() result) (result, bool) {
	t0 := time.Now()
	r := f()
	d := time.Since(t0)
	rec.status[r.status]++
	if o := r.outcome(); o != "" {
		rec.errors[o]++
		return r, false
	}
	rec.lat = append(rec.lat, d)
	return r, true
}

// untimed records the outcome of a preparation step (minting the code an
// exchange will redeem, the token a revocation will revoke) without
// counting it as a measured request; only its failures are reported.
func (rec *recorder) untimed(r result) bool {
	if o := r.outcome(); o != "" {
		rec.errors["prep: "+o]++
		return false
	}
	return true
}

func (rec *recorder) merge(o *recorder) {
	rec.lat = append(rec.lat, o.lat...)
	for k, v := range o.errors {
		rec.errors[k] += v
	}
	for k, v := range o.status {
		rec.status[k] += v
	}
	for k, v := range o.notes {
		rec.notes[k] += v
	}
}

// level is what one concurrency level measured.
type level struct {
	Mode        string
	Concurrency int
	Elapsed     time.Duration
	OK          int
	Errors      map[string]int
	Status      map[int]int
	Notes       map[string]int
	P50, P90    time.Duration
	P99, Max    time.Duration
	ServerCPU   float64 // seconds of CPU per successful request, -1 unknown
	PostgresCPU float64
	// LoadCPU is this program's own CPU per successful request: on one
	// machine the three share the cores, so a rate is bounded by the sum.
	LoadCPU float64
	RSS     map[int][2]int64 // pid → (VmRSS, VmHWM) in KiB
}

func summarise(mode string, conc int, elapsed time.Duration, rec *recorder) level {
	slices.Sort(rec.lat)
	pct := func(p float64) time.Duration {
		if len(rec.lat) == 0 {
			return 0
		}
		return rec.lat[int(float64(len(rec.lat)-1)*p)]
	}
	return level{
		Mode: mode, Concurrency: conc, Elapsed: elapsed, OK: len(rec.lat),
		Errors: rec.errors, Status: rec.status, Notes: rec.notes,
		P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: pct(1),
		ServerCPU: -1, PostgresCPU: -1, LoadCPU: -1,
	}
}

func (l level) rate() float64 { return float64(l.OK) / l.Elapsed.Seconds() }

func (l level) print(w io.Writer) {
	errs := 0
	for _, v := range l.Errors {
		errs += v
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }
	fmt.Fprintf(w, "mode=%s concurrency=%d duration=%s ok=%d errors=%d rate=%.0f/s p50=%s p90=%s p99=%s max=%s\n",
		l.Mode, l.Concurrency, l.Elapsed.Round(time.Millisecond), l.OK, errs, l.rate(),
		ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
	if len(l.Errors) > 0 {
		fmt.Fprintf(w, "  errors by status and code: %s\n", kv(l.Errors))
	}
	if len(l.Notes) > 0 {
		fmt.Fprintf(w, "  %s\n", kv(l.Notes))
	}
	if l.ServerCPU >= 0 {
		fmt.Fprintf(w, "  server CPU: %.1f µs/request\n", l.ServerCPU*1e6)
	}
	if l.PostgresCPU >= 0 {
		fmt.Fprintf(w, "  PostgreSQL CPU: %.1f µs/request\n", l.PostgresCPU*1e6)
	}
	if l.LoadCPU >= 0 {
		fmt.Fprintf(w, "  load program CPU: %.1f µs/request\n", l.LoadCPU*1e6)
	}
	for _, pid := range slices.Sorted(maps.Keys(l.RSS)) {
		m := l.RSS[pid]
		fmt.Fprintf(w, "  server pid %d RSS: %.1f MiB (peak %.1f MiB)\n", pid, float64(m[0])/1024, float64(m[1])/1024)
	}
}

func kv[K comparable](m map[K]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b K) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%v: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// ---- /proc accounting (Linux) ----

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times. It is 100
// on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) would need
// cgo).
const clockTicks = 100

// procStat returns (ppid, own user+system ticks, reaped children's ticks).
func procStat(pid int) (ppid int, self, children int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'. Then: state ppid … utime(14) stime cutime cstime.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	ppid = int(n(1))
	return ppid, n(11) + n(12), n(13) + n(14), nil
}

// cpuSeconds is the CPU time a process has used. With tree set, it adds its
// live children's and its reaped children's time: PostgreSQL does its work
// in one backend process per connection under the postmaster.
func cpuSeconds(pid int, tree bool) (float64, error) {
	_, self, reaped, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	total := self
	if tree {
		total += reaped
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			child, _ := strconv.Atoi(filepath.Base(d))
			ppid, s, c, err := procStat(child)
			if err == nil && ppid == pid {
				total += s + c
			}
		}
	}
	return float64(total) / clockTicks, nil
}

// rss returns VmRSS and VmHWM (peak) of pid in KiB.
func rss(pid int) (cur, peak int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = v
		case "VmHWM:":
			peak = v
		}
	}
	return cur, peak, nil
}

// cpuMeter measures the CPU seconds the given processes use between start
// and stop.
type cpuMeter struct {
	servers    []int
	pg         int
	s0, p0, l0 float64
}

func (m *cpuMeter) read() (srv, pg float64) {
	srv, pg = -1, -1
	if len(m.servers) > 0 {
		srv = 0
		for _, pid := range m.servers {
			s, err := cpuSeconds(pid, false)
			if err != nil {
				return -1, pg
			}
			srv += s
		}
	}
	if m.pg > 0 {
		if s, err := cpuSeconds(m.pg, true); err == nil {
			pg = s
		}
	}
	return srv, pg
}

func (m *cpuMeter) start() {
	m.s0, m.p0 = m.read()
	m.l0 = selfCPU()
}

// selfCPU is this process's CPU seconds, -1 when unknown.
func selfCPU() float64 {
	s, err := cpuSeconds(os.Getpid(), false)
	if err != nil {
		return -1
	}
	return s
}

// stop fills l's CPU-per-request and RSS fields.
func (m *cpuMeter) stop(l *level) {
	s1, p1 := m.read()
	if l1 := selfCPU(); l.OK > 0 && l1 >= 0 && m.l0 >= 0 {
		l.LoadCPU = (l1 - m.l0) / float64(l.OK)
	}
	if l.OK > 0 && s1 >= 0 && m.s0 >= 0 {
		l.ServerCPU = (s1 - m.s0) / float64(l.OK)
	}
	if l.OK > 0 && p1 >= 0 && m.p0 >= 0 {
		l.PostgresCPU = (p1 - m.p0) / float64(l.OK)
	}
	for _, pid := range m.servers {
		if cur, peak, err := rss(pid); err == nil {
			if l.RSS == nil {
				l.RSS = map[int][2]int64{}
			}
			l.RSS[pid] = [2]int64{cur, peak}
		}
	}
}
