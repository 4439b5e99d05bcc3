package main

// The device inventory: `updraft device show|list|tail` and the origin's
// --device-retention flag. `device list` lists the inventory; the pinned
// devices it listed before are `device overrides` (and `device list
// --overrides`, or `device list --after ID`, as before).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// retentionValue is a duration flag that also takes days ("90d").
type retentionValue struct{ d *time.Duration }

func (v retentionValue) String() string {
	if v.d == nil {
		return ""
	}
	if *v.d > 0 && *v.d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(*v.d/(24*time.Hour)), 10) + "d"
	}
	return v.d.String()
}

func (v retentionValue) Set(s string) error {
	d, err := parseDays(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

// notValue is a boolean flag (default true) setting *p to its negation.
type notValue struct{ p *bool }

func (v notValue) String() string {
	if v.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*v.p)
}

func (v notValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*v.p = !b
	return nil
}

func (v notValue) IsBoolFlag() bool { return true }

// parseDays parses a Go duration or a number of days ("90d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("want a duration like 90d or 2160h")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration like 90d or 2160h")
	}
	return d, nil
}

// deviceFlags registers the origin's device inventory flags.
func deviceFlags(fs *flag.FlagSet, oc *config.Origin) {
	fs.Var(retentionValue{&oc.DeviceRetention}, "device-retention", "devices not seen (no check-in, no event) for this long leave the device inventory, with their recent events (0: kept)")
	fs.Var(notValue{&oc.NoDeviceLog}, "device-log", "keep each device's last 50 check-ins and events in the device inventory (false: its last check-in only; saves a write per device and segment at ingest)")
}

// overridesListing reports whether a `device list` command line asks for
// the pinned devices (the command's meaning before the inventory):
// --overrides, or --after (its paging flag); --overrides is removed.
func overridesListing(args []string) (bool, []string) {
	var out []string
	found := false
	for _, a := range args {
		switch {
		case a == "--overrides" || a == "-overrides" || a == "--overrides=true":
			found = true
			continue
		case a == "--after" || a == "-after" || strings.HasPrefix(a, "--after=") || strings.HasPrefix(a, "-after="):
			found = true
		}
		out = append(out, a)
	}
	return found, out
}

// cmdDeviceInventory is `updraft device show|list|tail`.
func cmdDeviceInventory(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("device "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	var q client.DeviceQuery
	var seconds int
	switch sub {
	case "list":
		fs.StringVar(&q.Channel, "channel", "", "only devices last served by this channel")
		fs.StringVar(&q.Version, "version", "", "only devices whose last check-in ran this bundle (version_name)")
		fs.StringVar(&q.Platform, "platform", "", "only devices of this platform (ios, android, electron)")
		fs.IntVar(&q.Limit, "limit", 100, "devices per page (at most 1000)")
		fs.StringVar(&q.Cursor, "cursor", "", "the next page: the cursor the previous page printed")
	case "tail":
		fs.IntVar(&seconds, "seconds", 300, "stop after this long (at most 3600)")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *app == "" {
		return usagef("", "device %s: --app is required", sub)
	}
	if sub == "list" {
		if err := want(0, pos, "no arguments"); err != nil {
			return err
		}
	} else if err := want(1, pos, "one DEVICE_ID"); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "show":
		d, err := c.Device(ctx, *app, pos[0])
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, d)
		}
		printDevice(stdout, d.Device)
		if len(d.Events) > 0 {
			fmt.Fprintln(stdout)
			var rows [][]string
			for _, e := range d.Events {
				rows = append(rows, logRow(e))
			}
			table(stdout, logHeader, rows)
		}
		return nil
	case "list":
		page, err := c.ListDevices(ctx, *app, q)
		if err != nil {
			return err
		}
		if page.NextCursor != "" {
			fmt.Fprintf(stderr, "more: add --cursor %s\n", page.NextCursor)
		}
		if cf.json {
			return printList(stdout, page.Devices)
		}
		var rows [][]string
		for _, d := range page.Devices {
			rows = append(rows, []string{d.DeviceID, msTime(d.CheckedIn), orDash(d.Platform), orDash(d.VersionBuild), orDash(d.VersionName),
				orDash(d.Channel), orDash(d.Reason), orDash(d.Outcome)})
		}
		table(stdout, "DEVICE\tLAST_CHECK_IN\tPLATFORM\tNATIVE\tBUNDLE\tCHANNEL\tWHY\tANSWER", rows)
		return nil
	case "tail":
		if !cf.json {
			fmt.Fprintf(stderr, "tailing %s of %s for %ds (check-ins and events as edges forward them; Ctrl-C stops)\n", pos[0], *app, seconds)
		}
		return c.TailDevice(ctx, *app, pos[0], seconds, func(e store.DeviceLogEntry) error {
			if cf.json {
				return printJSONLine(stdout, e)
			}
			_, err := fmt.Fprintln(stdout, strings.Join(logRow(e), "  "))
			return err
		})
	}
	return unknownSub("device", sub, subcommands("device"))
}

// printJSONLine prints v as one line of JSON (a stream of JSON lines).
func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

const logHeader = "SEQ\tTIME\tKIND\tACTION\tVERSION\tTARGET\tCHANNEL\tWHY\tEDGE"

func logRow(e store.DeviceLogEntry) []string {
	return []string{strconv.FormatInt(e.Seq, 10), msTime(e.At), e.Kind, orDash(e.Action), orDash(e.VersionName), orDash(e.Target),
		orDash(e.Channel), orDash(e.Reason), shortEdge(e.EdgeID)}
}

func shortEdge(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return orDash(id)
}

// msTime formats a Unix ms time in UTC ("-" for 0).
func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000Z")
}

func printDevice(w io.Writer, d store.Device) {
	checkIn := msTime(d.CheckedIn)
	if d.CheckedIn == 0 {
		checkIn = "none (events only)"
	}
	arm := ""
	if d.Arm != "" {
		arm = " (arm " + d.Arm + ")"
	}
	table(w, "FIELD\tVALUE", [][]string{
		{"device", d.DeviceID},
		{"app", d.AppID},
		{"last seen", msTime(d.LastSeen)},
		{"last check-in", checkIn},
		{"edge", orDash(d.EdgeID)},
		{"platform", orDash(d.Platform)},
		{"native version", orDash(d.VersionBuild)},
		{"bundle version", orDash(d.VersionName)},
		{"plugin version", orDash(d.PluginVersion)},
		{"custom id", orDash(d.CustomID)},
		{"channel", orDash(d.Channel)},
		{"why", orDash(d.Reason) + arm},
		{"answer", orDash(d.Outcome)},
		{"bundle offered", orDash(d.Bundle)},
	})
}
