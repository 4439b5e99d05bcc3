package config

import (
	"strings"
	"testing"
	"time"
)

func TestMaxSnapshotAge(t *testing.T) {
	for age, ok := range map[time.Duration]bool{0: true, 2 * time.Second: true, 10 * time.Minute: true, time.Second: false, -time.Minute: false} {
		c := NewEdge("edge")
		c.MaxSnapshotAge = age
		if err := c.Validate(); (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "max_snapshot_age")) {
			t.Errorf("max age %v: %v", age, err)
		}
	}
}
