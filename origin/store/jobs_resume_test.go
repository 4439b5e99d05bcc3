package store

import (
	"context"
	"testing"
	"time"
)

// Issue 15, durable jobs: at start-up ResumeJobs queues again a build the
// crash interrupted, gives up one that already used its attempts (a build
// that kills the process does not crash-loop it), and gives a build job to
// a plain bundle left without one (stranded by the old in-memory queue, or
// stored before jobs existed). A second call changes nothing.
func TestResumeJobs(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	const app = "com.example.app"
	if _, err := s.CreateApp(ctx, app, "x"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		if _, err := s.CreateBundle(ctx, Bundle{AppID: app, Version: v, SHA256: "zip-" + v, Size: 100}); err != nil {
			t.Fatal(err)
		}
	}
	stranded, err := s.GetJob(ctx, JobBuild, app, "1.0.0")
	if err != nil {
		t.Fatalf("CreateBundle queued no build job: %v", err)
	}
	if err := s.DropJob(ctx, stranded.ID); err != nil {
		t.Fatal(err)
	}
	claim := func(version string) Job {
		t.Helper()
		j, ok, err := s.ClaimJob(ctx, JobBuild, time.Now())
		if err != nil || !ok || j.Version != version {
			t.Fatalf("claim: %+v %v %v, want the job of %s", j, ok, err, version)
		}
		return j
	}
	j := claim("1.0.1")
	if err := s.RetryJob(ctx, j, "disk on fire", time.Now()); err != nil {
		t.Fatal(err)
	}
	if j = claim("1.0.1"); j.Attempts != 2 {
		t.Fatalf("second claim: %+v", j)
	}
	claim("1.0.2")
	// The origin died here; a new one starts with 2 attempts per build.
	requeued, failed, added, err := s.ResumeJobs(ctx, 2, "interrupted", time.Now())
	if err != nil || requeued != 1 || failed != 1 || added != 1 {
		t.Fatalf("ResumeJobs: requeued %d, failed %d, added %d, %v; want 1, 1, 1", requeued, failed, added, err)
	}
	for v, want := range map[string]struct {
		state    string
		attempts int
		err      string
	}{"1.0.0": {JobQueued, 0, ""}, "1.0.1": {JobFailed, 2, "interrupted"}, "1.0.2": {JobQueued, 1, ""}} {
		j, err := s.GetJob(ctx, JobBuild, app, v)
		if err != nil || j.State != want.state || j.Attempts != want.attempts || j.LastError != want.err {
			t.Errorf("job of %s: %+v %v, want %s after %d attempts (%q)", v, j, err, want.state, want.attempts, want.err)
		}
	}
	if requeued, failed, added, err := s.ResumeJobs(ctx, 2, "interrupted", time.Now()); err != nil || requeued+failed+added != 0 {
		t.Fatalf("second ResumeJobs: %d, %d, %d, %v; want nothing to do", requeued, failed, added, err)
	}
}
