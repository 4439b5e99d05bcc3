package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// WeedVersion is the SeaweedFS module version the S3 tests run against;
// .ci/run builds the same one into the cache folder (keep them equal).
const WeedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// S3 is a running S3-compatible server (SeaweedFS) with one bucket.
type S3 struct {
	Endpoint  string // 127.0.0.1:PORT, plain HTTP
	AccessKey string
	SecretKey string
	Bucket    string // exists; shared by the tests of this binary (use Prefix)
}

// URL is the --blobs value for blobs under prefix in the bucket.
func (s *S3) URL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&insecure=1", s.Bucket, prefix, s.Endpoint)
}

// Creds are the server's credentials.
func (s *S3) Creds() *credentials.Credentials {
	return credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")
}

// SetEnv puts the credentials where the origin reads them
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) for the test's duration.
func (s *S3) SetEnv(t testing.TB) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
}

var s3Seq atomic.Int64

// Prefix returns a key prefix no other test of any binary uses: tests
// share the bucket (SeaweedFS gives each bucket volumes of its own, so a
// bucket per test would run the server out of them) but not keys.
func (s *S3) Prefix() string {
	return fmt.Sprintf("t%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9, s3Seq.Add(1))
}

var (
	weedOnce sync.Once
	weedS3   *S3
	weedErr  error
)

// Seaweed returns the S3 server of this test binary, started on first use
// (a SeaweedFS "weed server" with master, volume, filer and S3 gateway, on
// free loopback ports, requests signed with a generated key). It stops
// when the test binary exits, even on a crash (see startWeed). Without the
// weed binary (WeedBinary) the test is skipped, unless UPDRAFT_REQUIRE_S3
// is set (CI), which makes it fail.
func Seaweed(t testing.TB) *S3 {
	t.Helper()
	weedOnce.Do(func() {
		bin, err := WeedBinary()
		if err != nil {
			weedErr = err
			return
		}
		// A free port taken by someone else between choosing and binding
		// fails the start: choose again.
		for try := 0; try < 3; try++ {
			if weedS3, weedErr = startWeed(bin); weedErr == nil || !errors.Is(weedErr, errPortTaken) {
				return
			}
		}
	})
	if weedErr != nil {
		if os.Getenv("UPDRAFT_REQUIRE_S3") != "" {
			t.Fatalf("S3 server required (UPDRAFT_REQUIRE_S3) but unavailable: %v", weedErr)
		}
		t.Skipf("S3 server unavailable: %v", weedErr)
	}
	return weedS3
}

// WeedBinary finds SeaweedFS's weed: env UPDRAFT_WEED, else the one .ci/run
// builds (${XDG_CACHE_HOME:-$HOME/.cache}/updraft/weed-WeedVersion), else
// weed on PATH.
func WeedBinary() (string, error) {
	if p := os.Getenv("UPDRAFT_WEED"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("UPDRAFT_WEED=%s: %v", p, err)
		}
		return p, nil
	}
	if cache, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(cache, "updraft", "weed-"+WeedVersion)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no SeaweedFS binary: set UPDRAFT_WEED, or build github.com/seaweedfs/seaweedfs/weed@%s into ~/.cache/updraft/weed-%[1]s as .ci/run does", WeedVersion)
}

var errPortTaken = errors.New("port taken")

// freePorts returns n loopback ports free right now, all held open until
// all are chosen so that they differ.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startWeed starts weed server in a temporary folder. It runs under a
// shell that waits on its stdin, a pipe from this process: when the test
// binary exits for any reason the pipe closes, and the shell stops the
// server (killed if it takes over 3 s: its data is thrown away) and
// removes the folder. Ready means a signed PUT and GET of an
// object in the bucket work (the gateway answers before the filer and a
// writable volume are there).
func startWeed(bin string) (*S3, error) {
	dir, err := os.MkdirTemp("", "updraft-weed-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(8)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	key, secret := "updraft"+randHex(6), randHex(20)
	conf, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name":        "updraft-test",
		"credentials": []any{map[string]string{"accessKey": key, "secretKey": secret}},
		"actions":     []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}})
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), conf, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	args := []string{
		"server", "-dir=" + data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(ports[0]), "-master.port.grpc=" + strconv.Itoa(ports[1]),
		"-volume.port=" + strconv.Itoa(ports[2]), "-volume.port.grpc=" + strconv.Itoa(ports[3]),
		"-filer", "-filer.port=" + strconv.Itoa(ports[4]), "-filer.port.grpc=" + strconv.Itoa(ports[5]),
		"-s3", "-s3.port=" + strconv.Itoa(ports[6]), "-s3.port.grpc=" + strconv.Itoa(ports[7]),
		"-s3.config=" + filepath.Join(dir, "s3.json"),
		// Off: the catalog servers' fixed default ports, telemetry (no
		// network here), the volume server's 10 s farewell on stop.
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", "-volume.preStopSeconds=0",
		// Sockets in the folder, not /tmp/seaweedfs-*-PORT.sock.
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"), "-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
		// Small volumes, many allowed: every bucket gets volumes of its own.
		"-master.volumeSizeLimitMB=256", "-volume.max=64",
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + a + "'"
	}
	// weed server also puts a gRPC socket per service in /tmp, named by
	// port, whatever the flags: removed too.
	var sockets []string
	for i, svc := range map[int]string{1: "master", 3: "volume", 5: "filer", 7: "s3"} {
		sockets = append(sockets, fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc, ports[i]))
	}
	script := fmt.Sprintf(`'%s' %s >'%s/log' 2>&1 &
pid=$!
read _
kill $pid 2>/dev/null
(sleep 3; kill -9 $pid 2>/dev/null) &
wait $pid
rm -rf '%s' %s`, bin, strings.Join(quoted, " "), dir, dir, strings.Join(sockets, " "))
	cmd := exec.Command("sh", "-c", script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() { stdin.Close(); <-exited }
	s := &S3{Endpoint: fmt.Sprintf("127.0.0.1:%d", ports[6]), AccessKey: key, SecretKey: secret, Bucket: "updraft-test"}
	if err := waitWeed(s, dir, exited); err != nil {
		logTail := readTail(filepath.Join(dir, "log"), 4000)
		stop()
		if strings.Contains(logTail, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, fmt.Errorf("weed server did not get ready: %v\n%s", err, logTail)
	}
	weedStdin = append(weedStdin, stdin) // open for the life of the process; closed by exit
	return s, nil
}

// waitWeed polls until the bucket exists and takes a write and a read, the
// process dies, or two minutes pass.
func waitWeed(s *S3, dir string, exited <-chan struct{}) error {
	client, err := minio.New(s.Endpoint, &minio.Options{Creds: s.Creds(), MaxRetries: 1})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ok, err := client.BucketExists(ctx, s.Bucket)
		if err != nil {
			return err
		}
		if !ok {
			if err := client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
				return err
			}
		}
		body := []byte("ready")
		if _, err := client.PutObject(ctx, s.Bucket, "ready", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			return err
		}
		obj, err := client.GetObject(ctx, s.Bucket, "ready", minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		got, err := io.ReadAll(obj)
		if err == nil && !bytes.Equal(got, body) {
			err = fmt.Errorf("read back %q", got)
		}
		return err
	}
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("weed exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// weedStdin holds the pipes' write ends for the life of the process, so the
// garbage collector never closes them (which would stop the server).
var weedStdin []any

func readTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
