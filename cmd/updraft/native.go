package main

// Native compatibility (issue 20): what `bundle upload` records of the
// app's native packages, and `bundle compatibility`.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/native"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

// nativeFlags are the upload's native-package flags.
type nativeFlags struct {
	packageJSON string
	noCheck     bool
	from        string // the package.json scanned
}

func (n *nativeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.packageJSON, "package-json", "", "the app's package.json, whose native Capacitor packages (read from node_modules) are recorded with the bundle (default: ./package.json, else one next to the bundle folder)")
	fs.BoolVar(&n.noCheck, "no-native-check", false, "record no native packages: the bundle's compatibility is unknown and never blocks a channel")
}

// scan returns the native packages to send with an upload of bundlePath
// (nil: none recorded), telling stderr what it read unless quiet (like the
// upload's progress: only on a terminal, not with --json).
func (n *nativeFlags) scan(bundlePath string, quiet bool, stderr io.Writer) ([]native.Package, error) {
	if n.noCheck {
		return nil, nil
	}
	path := n.packageJSON
	if path == "" {
		wd, _ := os.Getwd()
		if path = native.FindPackageJSON(wd, bundlePath); path == "" {
			if !quiet {
				fmt.Fprintln(stderr, "note: no package.json in the current folder or next to the bundle folder: native packages not recorded (compatibility unknown); pass --package-json PATH")
			}
			return nil, nil
		}
	}
	pkgs, err := native.Scan(path)
	if err != nil {
		return nil, fmt.Errorf("native packages: %w; or pass --no-native-check to upload without them", err)
	}
	n.from = path
	return pkgs, nil
}

// cmdBundleCompatibility is `bundle compatibility V --channel C --app ID`.
// It exits 1 when the bundle is incompatible, so scripts can gate on it.
func cmdBundleCompatibility(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bundle compatibility", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	channel := fs.String("channel", "", "channel whose bundle to compare with (required)")
	minNative := fs.String("min-native-build", "", "count the channel's devices a bundle restricted to this native build would reach (default: the channel's restriction)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(1, pos, "one bundle VERSION"); err != nil {
		return err
	}
	if *app == "" || *channel == "" {
		return usagef("", "bundle compatibility: --app and --channel are required")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	rep, err := c.Compatibility(ctx, *app, pos[0], *channel, *minNative)
	if err != nil {
		return err
	}
	if cf.json {
		err = printJSON(stdout, rep)
	} else {
		printCompatibility(stdout, rep)
	}
	if err == nil && !rep.Compatible() {
		err = errIncompatible
	}
	return err
}

var errIncompatible = errors.New("incompatible: the bundle needs native code the channel's devices may lack")

func printCompatibility(w io.Writer, rep api.Compatibility) {
	fmt.Fprintf(w, "bundle %s against channel %s (bundle %s", rep.Bundle, rep.Channel, orDash(rep.ChannelBundle))
	if rep.MinNativeBuild != "" {
		fmt.Fprintf(w, ", min native build %s", rep.MinNativeBuild)
	}
	fmt.Fprintf(w, "): %s\n", rep.Verdict)
	if rep.Reason != "" {
		fmt.Fprintf(w, "  %s\n", rep.Reason)
	}
	defer printDeviceBuilds(w, rep.Devices)
	if len(rep.Diffs) == 0 {
		return
	}
	var rows [][]string
	for _, d := range rep.Diffs {
		change := d.Change
		if d.Bump != "" {
			change += " (" + d.Bump + ")"
		}
		ok := "yes"
		if !d.Compatible {
			ok = "NO"
		}
		rows = append(rows, []string{d.Name, orDash(d.Current), orDash(d.New), change, ok})
	}
	table(w, "PACKAGE\tCHANNEL\tBUNDLE\tCHANGE\tCOMPATIBLE", rows)
}

// printDeviceBuilds prints the native builds the channel's devices run
// and how many a gated bundle would reach.
func printDeviceBuilds(w io.Writer, d *api.DeviceBuilds) {
	if d == nil {
		return
	}
	if d.Total == 0 {
		fmt.Fprintf(w, "\nno device of the channel checked in within %d days (device inventory)\n", d.SinceDays)
		return
	}
	gate := "no native-build restriction"
	if d.MinNativeBuild != "" {
		gate = "native build " + d.MinNativeBuild + " or later"
	}
	fmt.Fprintf(w, "\ndevices of the channel (checked in within %d days): %d; with %s: %d (%.1f%%)\n",
		d.SinceDays, d.Total, gate, d.Reached, 100*float64(d.Reached)/float64(d.Total))
	var rows [][]string
	for _, b := range d.Builds {
		reached := "yes"
		if !b.Reached {
			reached = "no"
		}
		rows = append(rows, []string{orDash(b.Build), strconv.FormatInt(b.Devices, 10), reached})
	}
	table(w, "NATIVE BUILD\tDEVICES\tREACHED", rows)
}

// describeBelow says what devices below a channel's native gate get.
func describeBelow(g *snapshot.NativeGate) string {
	var parts []string
	for _, st := range g.Below {
		s := st.Bundle
		if st.MinBuild != "" {
			s += " (native " + st.MinBuild + "+)"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "no update"
	}
	return strings.Join(parts, ", then ")
}

func nativeSuffix(min string) string {
	if min == "" {
		return ""
	}
	return " (native build " + min + "+)"
}
