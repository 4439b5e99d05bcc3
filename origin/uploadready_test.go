package origin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/internal/testenv"
	"github.com/updraft-cdn/updraft/origin/client"
)

// BenchmarkUploadToReady times a release as an operator sees it: two
// uploads of a real bundle pair (swagger-ui 5.34.0 then 5.34.1, 1.2 MB
// zips of 20 files) until the second is ready (manifest, canonical archive
// and deltas from the first built), with blobs on files and on S3
// (SeaweedFS on 127.0.0.1). One op is one pair; bench/cluster.sh runs it
// on both store engines.
func BenchmarkUploadToReady(b *testing.B) {
	for _, backend := range []string{"files", "s3"} {
		b.Run(backend, func(b *testing.B) {
			dir := b.TempDir()
			cfg := testConfig(b, dir)
			cfg.GCInterval = 0
			if backend == "s3" {
				s3 := testenv.Seaweed(b)
				s3.SetEnv(b)
				cfg.Blobs = s3.URL(s3.Prefix())
			}
			srv, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(srv.Handler())
			defer func() { hs.Close(); srv.Close() }()
			key, _ := os.ReadFile(filepath.Join(dir, "api-key"))
			c := client.New(hs.URL, strings.TrimSpace(string(key)))
			zips := []string{filepath.Join("..", "testdata", "swagger-ui-5.34.0.zip"), filepath.Join("..", "testdata", "swagger-ui-5.34.1.zip")}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				app := fmt.Sprintf("com.example.ready%d", i)
				if _, err := c.CreateApp(ctx, app, ""); err != nil {
					b.Fatal(err)
				}
				for j, z := range zips {
					if _, err := c.UploadPath(ctx, app, fmt.Sprintf("1.0.%d", j), z, client.UploadOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				for deadline := time.Now().Add(testenv.Patience(3 * time.Minute)); ; time.Sleep(5 * time.Millisecond) {
					bs, err := c.ListBundles(ctx, app)
					if err != nil {
						b.Fatal(err)
					}
					ready := 0
					for _, bd := range bs {
						if bd.Canonical != "" && (bd.DeltaStatus == nil || bd.DeltaStatus.State == "ready") {
							ready++
						}
					}
					if ready == 2 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("pair %d not ready within 3m: %+v", i, bs)
					}
				}
			}
		})
	}
}
