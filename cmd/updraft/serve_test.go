package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/internal/testenv"
)

// TestMain lets tests run this binary's main in a child process, and runs
// the tests twice: on SQLite and files, then on PostgreSQL and S3
// (testenv.MainWithStores; in-process serves follow testOriginConfig).
func TestMain(m *testing.M) {
	if args := os.Getenv("UPDRAFT_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"updraft"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	// Builds at normal priority: on a machine busy with other test
	// binaries a niced builder would get almost no CPU, and tests wait for
	// builds (origin/lowprio_linux_test.go tests the priority itself).
	os.Setenv("UPDRAFT_BUILD_NICE", "0")
	testenv.MainWithStores(m)
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return p
}

func startTestServe(t *testing.T, data string) *running {
	t.Helper()
	oc := testOriginConfig(t, data)
	oc.Listen = "127.0.0.1:0"
	ec := config.NewEdge(filepath.Join(data, "edge-cache"))
	ec.Listen = "127.0.0.1:0"
	ec.TLS, ec.TLSListen = "self-signed", "127.0.0.1:0"
	r, err := startServe(context.Background(), serveOptions{origin: oc, edge: ec, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.stop(ctx)
	})
	return r
}

// cli runs an operator command against the test origin.
func cli(t *testing.T, r *running, data string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--origin", "http://"+r.OriginAddr, "--data", data)
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("updraft %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

type updateAnswer struct {
	Version  string `json:"version"`
	URL      string `json:"url"`
	Checksum string `json:"checksum"`
	Error    string `json:"error"`
	Kind     string `json:"kind"`
}

func checkUpdate(t *testing.T, edge, body string) updateAnswer {
	t.Helper()
	resp, err := http.Post("http://"+edge+"/updates", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a updateAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/updates: HTTP %d, %v", resp.StatusCode, err)
	}
	return a
}

const deviceBody = `{"app_id":"com.example.app","device_id":"00009A6B-EEFE-490A-9C60-8E965132AE51","version_name":"builtin",
"version_build":"1.0.0","version_code":"1","version_os":"17.2","platform":"ios","plugin_version":"8.51.14",
"is_emulator":false,"is_prod":true,"custom_id":"user-42","install_source":"app_store"}`

// TestWalkthrough is the README walkthrough over real listeners: create an
// app, upload the fixture bundle, make a default channel, ask for an update
// like the Capacitor plugin, download the url, compare with checksum.
func TestWalkthrough(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	zipPath := fixture(t, "swagger-ui-5.34.0.zip")
	out := cli(t, r, data, "bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.1")
	if !strings.Contains(out, "sha256") {
		t.Fatalf("upload output: %s", out)
	}
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")
	if out := cli(t, r, data, "channel", "list", "--app", "com.example.app"); !strings.Contains(out, "production  1.0.1") {
		t.Fatalf("channel list:\n%s", out)
	}

	a := checkUpdate(t, r.EdgeAddr, deviceBody)
	if a.Error != "" || a.Version != "1.0.1" {
		t.Fatalf("update answer: %+v", a)
	}
	raw, _ := os.ReadFile(zipPath)
	want := sha256.Sum256(raw)
	if a.Checksum != hex.EncodeToString(want[:]) {
		t.Fatalf("checksum %s, want sha256 of the zip", a.Checksum)
	}
	resp, err := http.Get(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(got)
	if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != a.Checksum || !bytes.Equal(got, raw) {
		t.Fatalf("download: HTTP %d, %d bytes, sha256 %x", resp.StatusCode, len(got), sum)
	}

	// The device now runs 1.0.1: nothing new.
	if a := checkUpdate(t, r.EdgeAddr, strings.Replace(deviceBody, `"builtin"`, `"1.0.1"`, 1)); a.Error != "no_new_version_available" || a.Kind != "up_to_date" {
		t.Fatalf("second check: %+v", a)
	}

	// A folder upload (the fixture unpacked) becomes the next release.
	dir := unzipTo(t, raw)
	out = cli(t, r, data, "bundle", "upload", dir, "--app", "com.example.app", "--version", "1.0.2", "--channel", "production")
	if !strings.Contains(out, "channel production now serves 1.0.2") {
		t.Fatalf("folder upload: %s", out)
	}
	if a := checkUpdate(t, r.EdgeAddr, strings.Replace(deviceBody, `"builtin"`, `"1.0.1"`, 1)); a.Version != "1.0.2" {
		t.Fatalf("after folder upload: %+v", a)
	}
	if out := cli(t, r, data, "bundle", "list", "--app", "com.example.app"); !strings.Contains(out, "1.0.2") || !strings.Contains(out, "1.0.1") {
		t.Fatalf("bundle list:\n%s", out)
	}
}

func unzipTo(t *testing.T, raw []byte) string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		os.WriteFile(p, b, 0o644)
	}
	return dir
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startChild runs `updraft ARGS...` as a child process (this test binary).
func startChild(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "UPDRAFT_TEST_MAIN_ARGS="+strings.Join(args, "\x1f"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("child %v log:\n%s", args, logs.String())
		}
	})
	return cmd
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", url)
}

// TestOriginKilledMidUpload kills the origin process (SIGKILL) while a bundle
// upload is streaming, restarts it on the same data folder, and checks that
// no partial bundle or blob is visible and the store still works.
func TestOriginKilledMidUpload(t *testing.T) {
	data := t.TempDir()
	addr := freePort(t)
	child := startChild(t, "origin", "--data", data, "--listen", addr)
	waitHTTP(t, "http://"+addr+"/healthz")
	key, _ := os.ReadFile(filepath.Join(data, "api-key"))
	authz := "Bearer " + strings.TrimSpace(string(key))

	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/apps", strings.NewReader(`{"id":"com.example.app"}`))
	req.Header.Set("Authorization", authz)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create app: %v %v", resp, err)
	}

	// Stream an upload slowly, and kill the origin once part of it is on disk.
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1000; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		pw.Close()
	}()
	up, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/apps/com.example.app/bundles?version=1.0.0", pr)
	up.Header.Set("Authorization", authz)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(up)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("upload finished with HTTP %d", resp.StatusCode)
		}
		errc <- err
	}()
	tmp := filepath.Join(data, "blobs", "tmp")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if es, _ := os.ReadDir(tmp); len(es) > 0 {
			if fi, err := es[0].Info(); err == nil && fi.Size() > 512<<10 {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	child.Process.Kill()
	child.Wait()
	<-errc
	pw.CloseWithError(io.ErrClosedPipe)
	if es, _ := os.ReadDir(tmp); len(es) == 0 {
		t.Fatal("the kill came before any byte reached disk; the test proved nothing")
	}

	// Restart on the same data: the temporary file is gone, no bundle exists.
	addr2 := freePort(t)
	startChild(t, "origin", "--data", data, "--listen", addr2)
	waitHTTP(t, "http://"+addr2+"/healthz")
	if es, _ := os.ReadDir(tmp); len(es) != 0 {
		t.Fatalf("temporary files survived restart: %d", len(es))
	}
	get, _ := http.NewRequest("GET", "http://"+addr2+"/api/v1/apps/com.example.app/bundles", nil)
	get.Header.Set("Authorization", authz)
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	var bundles []any
	json.NewDecoder(resp.Body).Decode(&bundles)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(bundles) != 0 {
		t.Fatalf("bundles after crash: HTTP %d %v", resp.StatusCode, bundles)
	}
	var blobs int
	filepath.Walk(filepath.Join(data, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			blobs++
		}
		return nil
	})
	if blobs != 0 {
		t.Fatalf("%d blob files after crash, want 0", blobs)
	}
}

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }

func readKey(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
