package fs

import (
	"os"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/origin/blob"
	"github.com/updraft-cdn/updraft/origin/blob/blobtest"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, blobtest.Options{
		Backdate: func(t *testing.T, s blob.Store, sha string, age time.Duration) {
			old := time.Now().Add(-age)
			if err := os.Chtimes(s.(*Store).Path(sha), old, old); err != nil {
				t.Fatal(err)
			}
		},
	})
}
