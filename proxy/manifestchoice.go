package proxy

import (
	"math"
	"path"
	"strings"

	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// Manifest or zip per device (issue 17; docs/design-notes.md, "Manifest
// or zip per device").
//
// The stock plugin downloads a manifest's files it does not hold,
// manifestConcurrency at a time per host, and the zip when the answer has
// no manifest. Many small changed files make the manifest slower than the
// zip (the Ionic fixture: 83 files, 6 round trips, twice the zip's time),
// so the edge leaves the manifest out when, for the bundle the device
// runs, its device profile (--device-rtt, --delta-link) expects the zip
// to finish first:
//
//	manifest: ceil(n / manifestConcurrency) · RTT + bytes·8 / link
//	zip:      RTT + zip size·8 / link
//
// where n and bytes are the target's manifest entries the device does not
// hold and their stored (.br) sizes. The decision depends on the snapshot,
// the bundle the device runs and the target only, so it is made once per
// snapshot and pair (answerTable.choices) and the answer stays cached
// (answerKey.manifest).
const (
	// manifestConcurrency: the files the plugin downloads at once
	// (Android DownloadService MANIFEST_MAX_CONCURRENT_FILES; iOS
	// manifestMaxConcurrentFiles on an 8-core phone).
	manifestConcurrency = 16
	// maxChoices bounds the pairs one snapshot's table remembers (a
	// version_name is the device's to choose); beyond it the table starts
	// over.
	maxChoices = 1024
)

// manifestCost is the device profile the choice is made for.
type manifestCost struct {
	rttNs         float64 // --device-rtt
	bitsPerSecond float64 // --delta-link
}

func newManifestCost(rttNs int64, bitsPerSecond float64) manifestCost {
	return manifestCost{rttNs: float64(rttNs), bitsPerSecond: bitsPerSecond}
}

// on reports whether the edge chooses at all: with --device-rtt 0 or
// --delta-link 0 every plugin that takes a manifest gets it.
func (c manifestCost) on() bool { return c.rttNs > 0 && c.bitsPerSecond > 0 }

// heldFile is how the plugin finds a file it holds in its cache folder
// capgo_downloads: "<file_hash>_<base name without .br>"
// (DownloadService.handleManifestDownload, CapgoUpdater.downloadManifest;
// bench/capgo.go heldKey). It fills that cache with every file of each
// bundle it installs, by manifest or zip.
type heldFile struct{ hash, base string }

func heldKeyOf(f *snapshot.ManifestEntry) heldFile {
	return heldFile{f.Hash, path.Base(strings.TrimSuffix(f.Name, ".br"))}
}

// missingFiles counts the entries of to's manifest a device running from
// does not hold, and their stored bytes. A device on the store build or
// an unknown bundle (from nil), or one whose bundle has no manifest, holds
// none.
func missingFiles(from, to *snapshot.Bundle) (n int, bytes int64) {
	var held map[heldFile]struct{}
	if from != nil && len(from.Manifest) > 0 {
		held = make(map[heldFile]struct{}, len(from.Manifest))
		for i := range from.Manifest {
			held[heldKeyOf(&from.Manifest[i])] = struct{}{}
		}
	}
	for i := range to.Manifest {
		f := &to.Manifest[i]
		if _, ok := held[heldKeyOf(f)]; ok {
			continue
		}
		n++
		bytes += f.Size
	}
	return n, bytes
}

// manifestFirst reports whether a device running from (nil: the store
// build or an unknown bundle) is expected to finish downloading to by its
// manifest no later than by its zip. Encrypted bundles always keep their
// manifest (as before the choice): their file_hash values are encrypted,
// and the plugin keys its cache by the decrypted hash, which the edge
// cannot compute.
func (c manifestCost) manifestFirst(from, to *snapshot.Bundle) bool {
	if !c.on() || len(to.Manifest) == 0 || to.Encrypted() || from != nil && from.Encrypted() {
		return true
	}
	n, bytes := missingFiles(from, to)
	rounds := math.Ceil(float64(n) / manifestConcurrency)
	manifestNs := rounds*c.rttNs + float64(bytes)*8e9/c.bitsPerSecond
	zipNs := c.rttNs + float64(to.Size)*8e9/c.bitsPerSecond
	return manifestNs <= zipNs
}

// bundlePair names a choice within one snapshot.
type bundlePair struct{ from, to *snapshot.Bundle }

type choiceMap = map[bundlePair]bool

// manifestFirst is manifestCost.manifestFirst, decided once per snapshot
// and pair: later requests read the table's map without a lock or an
// allocation. Under a snapshot the cache no longer holds (a swap
// meanwhile), it decides without remembering.
func (c *answerCache) manifestFirst(snap *snapshot.Snapshot, cost manifestCost, from, to *snapshot.Bundle) bool {
	if from != nil && len(from.Manifest) == 0 && !from.Encrypted() {
		from = nil // holds nothing the edge knows of: one entry per target
	}
	t := c.table.Load()
	if t == nil || t.snap != snap {
		return cost.manifestFirst(from, to)
	}
	k := bundlePair{from, to}
	if m := t.choices.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	v := cost.manifestFirst(from, to)
	t.choicesMu.Lock()
	defer t.choicesMu.Unlock()
	cur := t.choices.Load()
	if cur != nil {
		if v, ok := (*cur)[k]; ok {
			return v
		}
	}
	var m choiceMap
	if cur == nil || len(*cur) >= maxChoices {
		m = make(choiceMap, 1)
	} else {
		m = make(choiceMap, len(*cur)+1)
		for k, v := range *cur {
			m[k] = v
		}
	}
	m[k] = v
	t.choices.Store(&m)
	return v
}
