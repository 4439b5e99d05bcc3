package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// Peer is a server the same scenario runs against, for comparison.
type Peer struct {
	Name   string
	Target string // base URL
	stop   func()
}

// StartPeers starts nginx and Caddy (whichever is installed) on 127.0.0.1,
// serving the bundle the target offers at the same path and the target's
// update answer as a static reply to POST /updates, so that the scenario
// runs unchanged against each. dir receives their files; Stop the peers.
func StartPeers(ctx context.Context, o Options, dir string, log io.Writer) ([]*Peer, error) {
	// The peers' output is copied by exec's goroutines: log must take
	// concurrent writes (wrap it with SyncWriter if the caller writes too).
	log = SyncWriter(log)
	if err := o.defaults(); err != nil {
		return nil, err
	}
	t, err := newTransport(o.Proto, 4, o.Insecure)
	if err != nil {
		return nil, err
	}
	defer t.close()
	dev := fleet(o)[0]
	status, answer, err := t.do(ctx, "POST", o.Target+"/updates", dev.body, nil)
	if err != nil || status != 200 || !bytes.Contains(answer, []byte(`"url"`)) {
		return nil, fmt.Errorf("compare: the target offers no update to copy: %v (HTTP %d) %s", err, status, answer)
	}
	answer = append([]byte(nil), answer...)
	path := string(answer[bytes.Index(answer, []byte(o.Target))+len(o.Target):])
	path = path[:strings.IndexByte(path, '"')] // /b/{sha256}
	status, bundle, err := t.do(ctx, "GET", o.Target+path, nil, nil)
	if err != nil || status != 200 {
		return nil, fmt.Errorf("compare: download %s: %v (HTTP %d)", path, err, status)
	}
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(www, filepath.Dir(path)), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(www, path), bundle, 0o644); err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	var peers []*Peer
	for _, start := range []func(context.Context, string, string, []byte, string, io.Writer) (*Peer, error){startNginx, startCaddy} {
		p, err := start(ctx, dir, www, answer, o.Target, log)
		if err != nil {
			fmt.Fprintf(log, "compare: %v (skipped)\n", err)
			continue
		}
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		return nil, errors.New("compare: neither nginx nor caddy could be started (Debian: apt-get install nginx-light caddy)")
	}
	return peers, nil
}

// Stop stops the peer.
func (p *Peer) Stop() { p.stop() }

func freeLocalAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitUp(addr string) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("%s did not start listening", addr)
}

func startNginx(ctx context.Context, dir, www string, answer []byte, target string, log io.Writer) (*Peer, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return nil, errors.New("nginx not installed")
	}
	addr, err := freeLocalAddr()
	if err != nil {
		return nil, err
	}
	body := strings.ReplaceAll(string(answer), target, "http://"+addr)
	nd := filepath.Join(dir, "nginx")
	os.MkdirAll(nd, 0o755)
	conf := fmt.Sprintf(`worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 120s;
  open_file_cache max=1000 inactive=60s;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  default_type application/octet-stream;
  server {
    listen %[2]s;
    root %[3]s;
    # The answer is a file (too long for a config string); POST to a static
    # file is 405, which error_page turns into a GET of the same answer.
    location = /updates { default_type application/json; error_page 405 =200 /updates.json; }
    location = /updates.json { default_type application/json; }
    location /b/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    # Device events: read and discard the body, answer ok (nothing kept).
    location = /stats { client_max_body_size 1m; client_body_buffer_size 1m; default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
`, nd, addr, www)
	for _, name := range []string{"updates", "updates.json"} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	cf := filepath.Join(nd, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	os.Chmod(www, 0o755)
	cmd := exec.Command(bin, "-c", cf, "-p", nd, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = log, log
	if err := startGroup(cmd); err != nil {
		return nil, err
	}
	if err := waitUp(addr); err != nil {
		stopGroup(cmd)
		return nil, err
	}
	return &Peer{Name: "nginx", Target: "http://" + addr, stop: func() { stopGroup(cmd) }}, nil
}

func startCaddy(ctx context.Context, dir, www string, answer []byte, target string, log io.Writer) (*Peer, error) {
	bin, err := exec.LookPath("caddy")
	if err != nil {
		return nil, errors.New("caddy not installed")
	}
	addr, err := freeLocalAddr()
	if err != nil {
		return nil, err
	}
	body := strings.ReplaceAll(string(answer), target, "http://"+addr)
	cd := filepath.Join(dir, "caddy")
	os.MkdirAll(cd, 0o755)
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\tstorage file_system %s\n}\nhttp://127.0.0.1:%s {\n\tbind 127.0.0.1\n\troot * %s\n\t@u path /updates\n\theader @u Content-Type application/json\n\trespond @u `%s` 200\n\t@s path /stats\n\theader @s Content-Type application/json\n\trespond @s `{\"status\":\"ok\"}` 200\n\tfile_server\n}\n",
		cd, port, www, body)
	cf := filepath.Join(cd, "Caddyfile")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+cd, "XDG_DATA_HOME="+cd, "XDG_CONFIG_HOME="+cd)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := startGroup(cmd); err != nil {
		return nil, err
	}
	if err := waitUp(addr); err != nil {
		stopGroup(cmd)
		return nil, err
	}
	return &Peer{Name: "caddy", Target: "http://" + addr, stop: func() { stopGroup(cmd) }}, nil
}

// startGroup starts a peer in its own process group, so that stopping it
// also stops its workers (nginx forks them).
func startGroup(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second // its workers may hold our output pipe
	return cmd.Start()
}

// stopGroup asks the peer's whole process group to stop, then kills what is
// left after a grace period.
func stopGroup(cmd *exec.Cmd) {
	pgid := -cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pgid, syscall.SIGKILL)
		<-done
	}
	syscall.Kill(pgid, syscall.SIGKILL) // any straggler
}

// WriteComparison prints the main figures of each run side by side, with
// Updraft's (the first report's) ratios to each peer: throughput (checks
// per second; meaningful for closed-loop phases, equal by design in open
// loop) and median time to update (peer ÷ Updraft: above 1, Updraft was
// faster).
func WriteComparison(w io.Writer, names []string, reps []*Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tchecks/s\tcheck p50 ms\tcheck p99 ms\ttime-to-update p50 ms\tp99 ms\tMB/s\tfailures\tthroughput ratio\tupdate-time ratio\t")
	base := reps[0].Phases[len(reps[0].Phases)-1]
	for i, rep := range reps {
		p := rep.Phases[len(rep.Phases)-1]
		thr, ttu := "-", "-"
		if i > 0 {
			if p.ChecksPerSec > 0 {
				thr = fmt.Sprintf("%.2f×", base.ChecksPerSec/p.ChecksPerSec)
			}
			if base.TimeToUpdate.P50 > 0 {
				ttu = fmt.Sprintf("%.2f×", p.TimeToUpdate.P50/base.TimeToUpdate.P50)
			} else if base.Checks.P50 > 0 {
				ttu = fmt.Sprintf("%.2f× (checks)", p.Checks.P50/base.Checks.P50)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%s\t%s\t\n", names[i], p.ChecksPerSec, p.Checks.P50, p.Checks.P99,
			p.TimeToUpdate.P50, p.TimeToUpdate.P99, p.MBPerSec, p.Failures, thr, ttu)
	}
	tw.Flush()
	fmt.Fprintln(w, "(ratios are Updraft relative to the peer; above 1 is better for Updraft. nginx and Caddy answer")
	fmt.Fprintln(w, " the update check from a static copy of Updraft's answer; Updraft resolves each one.)")
}

// SyncWriter returns w with its writes serialized, for output shared by the
// peers' processes and the caller.
func SyncWriter(w io.Writer) io.Writer {
	if l, ok := w.(*lockedWriter); ok {
		return l
	}
	return &lockedWriter{w: w}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
