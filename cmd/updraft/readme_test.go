package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The README is executable: TestREADMEWalkthrough runs the commands of the
// README's "## Walkthrough" section (and its subsections), in order, against
// a fresh `updraft serve`, and checks the outputs the README shows.
//
// Extraction (readmeSteps):
//   - every ```sh block under "## Walkthrough" up to the next "## " heading;
//     a command is a line plus its continuation lines (a trailing `\`, or a
//     single-quoted string left open, as in the curl -d '{...}' commands);
//   - a comment line right after a command, `# TEXT`, is TEXT shown as the
//     command's output; `# updraft: ...` shows the command failing on purpose
//     (the CLI's error line), so that command must exit non-zero; comments
//     indented after the `#` (`#   restart edges ...`) are notes; a trailing
//     "  (note)" after two spaces in such a comment is a note too;
//   - an inline comment starting with `{` (`curl ... # {"status":"ok"}`) is
//     the command's output; other inline comments are descriptions;
//   - a ``` or ```json block that follows a ```sh block (only prose between)
//     is the output of that block's last command.
//
// Comparison (expectRegexp): each non-empty expected line must match a line
// of the command's output (stdout and stderr), in order. Stable parts are
// compared literally, after the same port and /tmp rewrites as the commands;
// these parts vary between runs and match anything of their kind:
//   - numbers (counts, sizes, rates, timings, revisions, buckets, dates,
//     ports), except dotted versions and addresses like 1.0.2 or 127.0.0.1,
//     which are compared;
//   - `…` and `...` (any text within the line);
//   - runs of white space (table alignment).
//
// A shown JSON object is compared field by field (expectMatcher): each shown
// field must be in the output's object with a matching value; fields the
// README leaves out may be there.
//
// Every other command must exit 0. Read-only commands whose output depends on
// background work (stats after /stats, resolve after a change) are rerun until
// the output matches, up to a deadline. One README line is random by design:
// the 10% rollout's bucket draws its own id, so the resolve after it may find
// the device in the rollout (about one run in ten); that is accepted.
//
// Practicalities: the binary is built once (go build, warm module cache) and
// `go run ./cmd/updraft` is replaced by its path; commands run through
// `bash -c` in a temporary folder holding a symlink to testdata/ (the
// walkthrough's files stay out of the repository); serve listens on free
// ports, and the README's 127.0.0.1:8080/8090/8443 (and the second edge's
// 8081) are rewritten to them; /tmp/ is rewritten to a temporary folder; the
// benchmark is shortened from 10000 devices over 30s to 100 devices over 2s;
// the second `edge` runs in the background until the test ends.
func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("README walkthrough: builds the binary and runs every command (not under -short)")
	}
	for _, tool := range []string{"bash", "curl", "sed", "sha256sum", "tee"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("README walkthrough needs %s: %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := readmeSteps(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) < 20 {
		t.Fatalf("found only %d walkthrough commands in README.md", len(steps))
	}

	root, _ := filepath.Abs(filepath.Join("..", ".."))
	work := t.TempDir()
	bin := filepath.Join(t.TempDir(), "updraft")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./cmd/updraft")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink(filepath.Join(root, "testdata"), filepath.Join(work, "testdata")); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "tmp")
	os.MkdirAll(tmp, 0o755)

	origin, edge, tls, edge2 := freePort(t), freePort(t), freePort(t), freePort(t)
	rewrite := strings.NewReplacer(
		"go run ./cmd/updraft", bin,
		"127.0.0.1:8080", edge,
		"127.0.0.1:8090", origin,
		"127.0.0.1:8443", tls,
		"localhost:8443", tls,
		"127.0.0.1:8081", edge2,
		"/tmp/", tmp+"/",
	)
	env := append(os.Environ(), "UPDRAFT_ORIGIN=http://"+origin, "HOME="+t.TempDir())

	serve := exec.Command(bin, "serve", "--origin-listen", origin, "--edge-listen", edge, "--tls-listen", tls)
	serve.Dir, serve.Env = work, env
	var serveLog syncBuffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			serve.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("serve log:\n%s", serveLog.String())
		}
	})
	waitHTTP(t, "http://"+origin+"/healthz")
	waitHTTP(t, "http://"+edge+"/healthz")

	start := time.Now()
	for i, s := range steps {
		cmdline := rewrite.Replace(s.cmd)
		if strings.Contains(s.cmd, "bench --scenario") {
			// Shortened: the README's run takes 30 s and moves 50 GB.
			cmdline = strings.NewReplacer("--devices 10000", "--devices 100", "--duration 30s", "--duration 2s").Replace(cmdline)
			if !strings.Contains(cmdline, "--target") {
				cmdline += " --target http://" + edge
			}
		}
		label := fmt.Sprintf("README.md:%d (%s)", s.line, firstLine(s.cmd))
		if regexp.MustCompile(`updraft edge\b`).MatchString(s.cmd) {
			startBackground(t, cmdline, work, env, label)
			if m := regexp.MustCompile(`--listen (\S+)`).FindStringSubmatch(cmdline); m != nil {
				waitHTTP(t, "http://"+m[1]+"/healthz")
			}
			continue
		}
		var expect []func(string) bool
		for _, e := range s.expect {
			expect = append(expect, expectMatcher(rewrite.Replace(e)))
		}
		retry := regexp.MustCompile(`updraft (stats|resolve|\S+ list)\b`).MatchString(s.cmd)
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := runShell(cmdline, work, env)
			if s.wantFail != (err != nil) {
				t.Fatalf("step %d, %s: exit %v, README shows it %s\n$ %s\n%s", i, label, err,
					map[bool]string{true: "failing", false: "succeeding"}[s.wantFail], cmdline, out)
			}
			if strings.HasPrefix(s.cmd, "sha256sum ") {
				// The README's point: the download's SHA-256 is the answer's checksum.
				f := strings.Fields(out)
				if len(f) != 3 || f[0] != f[2] || len(f[0]) != 64 {
					t.Fatalf("%s: sha256 of the download differs from the checksum:\n%s", label, out)
				}
			}
			bad := matchInOrder(out, expect)
			if bad < 0 {
				break
			}
			if slices.ContainsFunc(s.expect, func(e string) bool { return strings.Contains(e, "not in the rollout") }) &&
				regexp.MustCompile(`(?m)^update to 1\.0\.2\n.*; in the rollout \(bucket`).MatchString(out) {
				t.Logf("%s: this run's rollout id put the device in the 10%% rollout (accepted):\n%s", label, out)
				break
			}
			if !retry || time.Now().After(deadline) {
				t.Fatalf("step %d, %s: output does not show the README's line\n  %s\n$ %s\n%s",
					i, label, s.expect[bad], cmdline, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("%d README commands ran in %s", len(steps), time.Since(start).Round(time.Millisecond))
}

type readmeStep struct {
	line     int    // README line of the command's first line
	cmd      string // the command as written
	expect   []string
	wantFail bool
}

// readmeSteps extracts the walkthrough's commands and shown outputs (see the
// rules above TestREADMEWalkthrough).
func readmeSteps(readme string) ([]readmeStep, error) {
	lines := strings.Split(readme, "\n")
	var steps []readmeStep
	in := false
	lastShBlock := false // the previous fenced block was ```sh (only prose since)
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "## ") {
			in = strings.TrimSpace(l) == "## Walkthrough"
			lastShBlock = false
			continue
		}
		if !in || !strings.HasPrefix(l, "```") {
			continue
		}
		lang := strings.TrimSpace(strings.TrimPrefix(l, "```"))
		var body []string
		bodyStart := i + 1
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("README.md:%d: unclosed code block", bodyStart)
		}
		switch lang {
		case "sh":
			n := len(steps)
			for j := 0; j < len(body); j++ {
				b := body[j]
				t := strings.TrimSpace(b)
				switch {
				case t == "":
				case strings.HasPrefix(t, "#"):
					text := strings.TrimPrefix(strings.TrimPrefix(t, "#"), " ")
					if len(steps) == n || strings.HasPrefix(text, " ") {
						continue // a note
					}
					text = regexp.MustCompile(`\s{2,}\(.*\)\s*$`).ReplaceAllString(text, "")
					last := &steps[len(steps)-1]
					last.expect = append(last.expect, text)
					if strings.HasPrefix(text, "updraft: ") {
						last.wantFail = true
					}
				default:
					s := readmeStep{line: bodyStart + j + 1, cmd: b}
					for (strings.HasSuffix(s.cmd, `\`) || strings.Count(s.cmd, "'")%2 == 1) && j+1 < len(body) {
						j++
						s.cmd += "\n" + body[j]
					}
					if k := strings.LastIndex(s.cmd, "  # "); k >= 0 && strings.HasPrefix(strings.TrimSpace(s.cmd[k+4:]), "{") {
						s.expect = append(s.expect, strings.TrimSpace(s.cmd[k+4:]))
					}
					steps = append(steps, s)
				}
			}
			lastShBlock = len(steps) > n
		case "", "json", "text":
			if lastShBlock {
				last := &steps[len(steps)-1]
				for _, b := range body {
					if strings.TrimSpace(b) != "" {
						last.expect = append(last.expect, b)
					}
				}
			}
			lastShBlock = false
		default:
			lastShBlock = false
		}
	}
	return steps, nil
}

// expectMatcher matches an output line against a line the README shows: a
// JSON object by its fields (each shown field present, its value matching as
// by expectRegexp; fields the README leaves out, like the manifest that comes
// a few seconds after an upload, may be there), any other line by expectRegexp.
func expectMatcher(line string) func(string) bool {
	var want map[string]any
	if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &want) == nil {
		return func(got string) bool {
			var have map[string]any
			if json.Unmarshal([]byte(got), &have) != nil {
				return false
			}
			for k, v := range want {
				hv, ok := have[k]
				if !ok {
					return false
				}
				wb, _ := json.Marshal(v)
				hb, _ := json.Marshal(hv)
				if !regexp.MustCompile(`^(?:` + expectRegexp(string(wb)).String() + `)$`).Match(hb) {
					return false
				}
			}
			return true
		}
	}
	return expectRegexp(line).MatchString
}

var expectToken = regexp.MustCompile(`[0-9a-f]{8,}|\d+(?:\.\d+){2,}|\d+(?:\.\d+)?|…|\.\.\.|\s+`)

// expectRegexp turns a line the README shows into a regexp of its stable
// parts (see the rules above TestREADMEWalkthrough).
func expectRegexp(line string) *regexp.Regexp {
	var b strings.Builder
	pos := 0
	for _, m := range expectToken.FindAllStringIndex(line, -1) {
		b.WriteString(regexp.QuoteMeta(line[pos:m[0]]))
		tok := line[m[0]:m[1]]
		switch {
		case tok == "…" || tok == "...":
			b.WriteString(`.*?`)
		case strings.TrimSpace(tok) == "":
			b.WriteString(`\s+`)
		case strings.Count(tok, ".") >= 2 || strings.ContainsAny(tok, "abcdef"):
			b.WriteString(regexp.QuoteMeta(tok))
		default:
			b.WriteString(`\d+(?:\.\d+)?`)
		}
		pos = m[1]
	}
	b.WriteString(regexp.QuoteMeta(line[pos:]))
	return regexp.MustCompile(b.String())
}

// matchInOrder reports the index of the first expected line that no output
// line (after the previous match) matches, or -1.
func matchInOrder(out string, expect []func(string) bool) int {
	lines := strings.Split(out, "\n")
	k := 0
	for i, match := range expect {
		for k < len(lines) && !match(lines[k]) {
			k++
		}
		if k == len(lines) {
			return i
		}
		k++
	}
	return -1
}

func runShell(cmdline, dir string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", "set -o pipefail; "+cmdline)
	c.Dir, c.Env = dir, env
	out, err := c.CombinedOutput()
	return string(out), err
}

// startBackground runs a long-lived command (the second edge) until the test ends.
func startBackground(t *testing.T, cmdline, dir string, env []string, label string) {
	t.Helper()
	c := exec.Command("bash", "-c", "exec "+cmdline)
	c.Dir, c.Env = dir, env
	var logs syncBuffer
	c.Stdout, c.Stderr = &logs, &logs
	if err := c.Start(); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	t.Cleanup(func() {
		c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", label, logs.String())
		}
	})
}

func firstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Scan()
	if l := sc.Text(); len(l) > 80 {
		return l[:80] + "…"
	}
	return sc.Text()
}

// syncBuffer is a bytes.Buffer safe for a child's stdout and stderr at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestREADMEStepsExtracted checks the extraction itself (also under -short):
// the walkthrough's commands, its shown outputs and its one failure on purpose.
func TestREADMEStepsExtracted(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := readmeSteps(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	var fails, outputs int
	for _, s := range steps {
		if s.wantFail {
			fails++
		}
		if len(s.expect) > 0 {
			outputs++
		}
		if testing.Verbose() {
			t.Logf("README.md:%d fail=%v\n$ %s\n  %s", s.line, s.wantFail, s.cmd, strings.Join(s.expect, "\n  "))
		}
		if !strings.Contains(s.cmd, "go run ./cmd/updraft") && !strings.HasPrefix(s.cmd, "curl ") && !strings.HasPrefix(s.cmd, "sha256sum ") {
			t.Errorf("README.md:%d: unexpected command %q", s.line, s.cmd)
		}
	}
	// The comparison keeps versions and words, and lets numbers vary.
	for _, c := range []struct {
		expect, line string
		match        bool
	}{
		{"update to 1.0.1", "update to 1.0.1", true},
		{"update to 1.0.1", "update to 1.0.2", false},
		{"why: channel beta by rule override; snapshot rev 8", "why: channel beta by rule override; snapshot rev 12", true},
		{`{"version":"1.0.1","url":"http://127.0.0.1:8080/b/607b0e70…","checksum":"607b0e70…"}`,
			`{"version":"1.0.1","url":"http://127.0.0.1:41234/b/607b0e70aa","checksum":"607b0e70aa","manifest":[]}`, true},
		{`{"version":"1.0.1","url":"http://127.0.0.1:8080/b/607b0e70…"}`, `{"version":"1.0.1","url":"http://127.0.0.1:41234/b/8dc8059d"}`, false},
		{"1.0.2   1        0          1         1         50.0%      12.1%      update_fail=1",
			"1.0.2   1  0  1  1  50.0%  9.4%  update_fail=1", true},
	} {
		if got := expectMatcher(c.expect)(c.line); got != c.match {
			t.Errorf("expectMatcher(%q) on %q: %v, want %v", c.expect, c.line, got, c.match)
		}
	}
	if len(steps) < 20 || fails != 1 || outputs < 8 {
		t.Fatalf("extracted %d commands, %d failing on purpose, %d with outputs", len(steps), fails, outputs)
	}
}
