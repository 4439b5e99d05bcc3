package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// parsePercent reads "10" or "12.5" (percent) as basis points.
func parsePercent(s string) (int, error) {
	p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || p < 0 || p > 100 || math.IsNaN(p) {
		return 0, fmt.Errorf("percent %q: want a number from 0 to 100", s)
	}
	return int(math.Round(p * 100)), nil
}

func describeRollout(ch store.Channel) string {
	s := describeRolloutOnly(ch)
	if g := ch.NativeGate; g != nil {
		s += fmt.Sprintf("; %s only for native build %s or later (below: %s)", ch.Bundle, g.MinBuild, describeBelow(g))
	}
	return s
}

func describeRolloutOnly(ch store.Channel) string {
	switch {
	case ch.Rollout != nil:
		state := "running"
		if ch.Rollout.Paused {
			state = "paused"
		}
		return fmt.Sprintf("channel %s: bundle %s; rollout of %s to %.2f%% of devices (%d bps)%s, %s, id %s",
			ch.Name, orDash(ch.Bundle), ch.Rollout.Bundle, float64(ch.Rollout.BPS)/100, ch.Rollout.BPS, nativeSuffix(ch.Rollout.MinNativeBuild), state, ch.Rollout.ID)
	case ch.AB != nil:
		var arms []string
		for _, a := range ch.AB.Arms {
			arms = append(arms, fmt.Sprintf("%s=%s %.2f%%%s", a.Name, a.Bundle, float64(a.BPS)/100, nativeSuffix(a.MinNativeBuild)))
		}
		return fmt.Sprintf("channel %s: bundle %s; A/B split %s, id %s", ch.Name, orDash(ch.Bundle), strings.Join(arms, ", "), ch.AB.ID)
	}
	return fmt.Sprintf("channel %s: bundle %s; no rollout", ch.Name, orDash(ch.Bundle))
}

// describeSplit is a channel's rollout or A/B split, and its native-build
// gate, in one table cell.
func describeSplit(ch store.Channel) string {
	s := describeSplitOnly(ch)
	if g := ch.NativeGate; g != nil {
		if s == "-" {
			s = ""
		} else {
			s += "; "
		}
		s += "native " + g.MinBuild + "+ (below: " + describeBelow(g) + ")"
	}
	return s
}

func describeSplitOnly(ch store.Channel) string {
	switch {
	case ch.Rollout != nil:
		s := fmt.Sprintf("rollout %s %.2f%%%s", ch.Rollout.Bundle, float64(ch.Rollout.BPS)/100, nativeSuffix(ch.Rollout.MinNativeBuild))
		if ch.Rollout.Paused {
			s += " paused"
		}
		return s
	case ch.AB != nil:
		var arms []string
		for _, a := range ch.AB.Arms {
			arms = append(arms, fmt.Sprintf("%s=%s:%.2f%%", a.Name, a.Bundle, float64(a.BPS)/100))
		}
		return "ab " + strings.Join(arms, ",")
	}
	return "-"
}

func cmdRollout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("channel rollout", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id")
	bundle := fs.String("bundle", "", "bundle version to roll out")
	percent := fs.String("percent", "", "share of the channel's devices, 0-100 (e.g. 5 or 12.5)")
	bps := fs.Int("bps", -1, "share in basis points, 0-10000 (instead of --percent)")
	minNative := fs.String("min-native-build", "", `the rolled-out bundle needs this native build (version_build) or later; devices below get the channel's bundle ("none": no restriction)`)
	force := fs.Bool("force", false, "roll out even if the bundle's native packages are incompatible with the channel's bundle")
	actions := map[string]*bool{}
	for _, a := range []string{"pause", "resume", "promote", "rollback"} {
		actions[a] = fs.Bool(a, false, a+" the rollout")
	}
	name, err := channelArgs(fs, args, app)
	if err != nil {
		return err
	}
	req := origin.RolloutRequest{Action: store.RolloutSet, Bundle: *bundle, Force: *force}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "min-native-build" {
			v := *minNative
			if v == "none" {
				v = ""
			}
			req.MinNativeBuild = &v
		}
	})
	n := 0
	for name, on := range actions {
		if *on {
			req.Action = store.RolloutAction(name)
			n++
		}
	}
	switch {
	case n > 1:
		return usagef("", "channel rollout: give one of --pause, --resume, --promote, --rollback")
	case n == 0:
		v := *bps
		if *percent != "" {
			if v, err = parsePercent(*percent); err != nil {
				return usagef("", "channel rollout: --%s", err)
			}
		}
		if v < 0 {
			return usagef("", "channel rollout: want --bundle V and --percent P (or --bps N), or one of --pause, --resume, --promote, --rollback")
		}
		req.BPS = &v
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if req.Action == store.RolloutSet && req.Bundle == "" {
		// Resizing the running rollout: --percent alone keeps its bundle.
		chs, err := c.ListChannels(ctx, *app)
		if err != nil {
			return err
		}
		for _, ch := range chs {
			if ch.Name == name && ch.Rollout != nil {
				req.Bundle = ch.Rollout.Bundle
			}
		}
		if req.Bundle == "" {
			return fmt.Errorf("channel rollout: %s has no rollout to resize; start one with --bundle V --percent P", name)
		}
	}
	ch, err := c.Rollout(ctx, *app, name, req)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, ch)
	}
	fmt.Fprintln(stdout, describeRollout(ch))
	return nil
}

// armsFlag collects --arm NAME=VERSION:PERCENT.
type armsFlag []snapshot.Arm

func (a *armsFlag) String() string { return fmt.Sprint(*a) }

func (a *armsFlag) Set(v string) error {
	name, rest, ok1 := strings.Cut(v, "=")
	version, pct, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return fmt.Errorf("--arm %q: want NAME=VERSION:PERCENT, e.g. b=1.3.0:50", v)
	}
	pct, min, _ := strings.Cut(pct, "@")
	bps, err := parsePercent(pct)
	if err != nil {
		return err
	}
	*a = append(*a, snapshot.Arm{Name: name, Bundle: version, BPS: bps, MinNativeBuild: min})
	return nil
}

func cmdAB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("channel ab", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id")
	var arms armsFlag
	fs.Var(&arms, "arm", "an arm NAME=VERSION:PERCENT[@MIN_NATIVE_BUILD] (repeat); devices past the arms, or below an arm's min native build, keep the channel's bundle")
	force := fs.Bool("force", false, "set the arms even if their bundles' native packages are incompatible with the channel's bundle")
	clear := fs.Bool("clear", false, "remove the A/B split")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(1, pos, "one channel NAME"); err != nil {
		return err
	}
	if *app == "" || (len(arms) == 0) == !*clear {
		return usagef("", "channel ab: want --app and either --arm NAME=VERSION:PERCENT (repeated) or --clear")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ch, err := c.SetABForce(ctx, *app, pos[0], arms, *force)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, ch)
	}
	fmt.Fprintln(stdout, describeRollout(ch))
	return nil
}

// optBool is a flag that records whether it was given.
type optBool struct{ v *bool }

func (o *optBool) String() string {
	if o.v == nil {
		return ""
	}
	return strconv.FormatBool(*o.v)
}

func (o *optBool) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	o.v = &b
	return nil
}

// optSwitch is a bool flag (--name, --name=false) that records whether it
// was given.
type optSwitch struct{ optBool }

func (o *optSwitch) IsBoolFlag() bool { return true }

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func cmdSegment(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("segment "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	var rule snapshot.Rule
	platforms, customIDs, deviceIDs := new(string), new(string), new(string)
	var emu, prod optBool
	var segWindows, segBlackouts listFlag
	position := new(int)
	*position = -1
	if sub == "add" {
		fs.StringVar(&rule.Channel, "channel", "", "channel the matching devices get (required)")
		fs.StringVar(platforms, "platform", "", "only these platforms (comma-separated: ios,android,electron)")
		fs.StringVar(&rule.VersionBuild, "version-build", "", `native version range, e.g. ">=2.0.0 <3.0.0" or "^2"`)
		fs.StringVar(&rule.PluginVersion, "plugin-version", "", "plugin version range")
		fs.StringVar(customIDs, "custom-id", "", "custom ids (comma-separated)")
		fs.StringVar(&rule.CustomIDPrefix, "custom-id-prefix", "", "custom id prefix")
		fs.StringVar(deviceIDs, "device-id", "", "device ids (comma-separated)")
		fs.StringVar(&rule.Cohort, "cohort", "", "only members of this cohort (updraft cohort import)")
		fs.Var(&emu, "emulator", "only emulators (true) or only physical devices (false)")
		fs.Var(&prod, "prod", "only prod builds (true) or only dev builds (false)")
		fs.IntVar(position, "position", -1, "0-based place in the evaluation order (default: last)")
		fs.Var(&segWindows, "window", `maintenance window "DAY HH:MM-HH:MM ZONE" (repeatable): the devices this segment routes take updates only inside one (on top of the channel's windows)`)
		fs.Var(&segBlackouts, "blackout", `a date without updates for these devices, "YYYY-MM-DD" in the windows' zone or "YYYY-MM-DD ZONE" (repeatable)`)
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *app == "" {
		return usagef("", "segment %s: --app is required", sub)
	}
	switch sub {
	case "add", "remove":
		if err := want(1, pos, "one segment NAME"); err != nil {
			return err
		}
	case "list":
		if err := want(0, pos, "no arguments"); err != nil {
			return err
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		rule.Name = pos[0]
		rule.Platforms, rule.CustomIDs, rule.DeviceIDs = splitList(*platforms), splitList(*customIDs), splitList(*deviceIDs)
		rule.IsEmulator, rule.IsProd = emu.v, prod.v
		ws, err := parseSchedule(segWindows, segBlackouts)
		if err != nil {
			return usagef("", "segment add: %v", err)
		}
		rule.Windows = ws
		var p *int
		if *position >= 0 {
			p = position
		}
		seg, err := c.AddSegment(ctx, *app, rule, p)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, seg)
		}
		fmt.Fprintf(stdout, "segment %s (position %d) sends matching devices to channel %s\n", seg.Name, seg.Position, seg.Channel)
		return nil
	case "list":
		segs, err := c.ListSegments(ctx, *app)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, segs)
		}
		var rows [][]string
		for _, s := range segs {
			m := describeRule(s.Rule)
			if s.Windows != nil {
				m += " (updates only in: " + describeWindows(s.Windows) + ")"
			}
			rows = append(rows, []string{strconv.Itoa(s.Position), s.Name, s.Channel, m})
		}
		table(stdout, "POS\tNAME\tCHANNEL\tMATCHES", rows)
		return nil
	case "remove":
		if err := c.RemoveSegment(ctx, *app, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "segment %s removed\n", pos[0])
		return nil
	}
	return unknownSub("segment", sub, subcommands("segment"))
}

func describeRule(r snapshot.Rule) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("platform", strings.Join(r.Platforms, ","))
	add("version_build", r.VersionBuild)
	add("plugin_version", r.PluginVersion)
	add("custom_id in", strings.Join(r.CustomIDs, ","))
	add("custom_id prefix", r.CustomIDPrefix)
	if len(r.DeviceIDs) > 0 {
		add("device ids", strconv.Itoa(len(r.DeviceIDs)))
	}
	add("cohort", r.Cohort)
	if r.IsEmulator != nil {
		add("emulator", strconv.FormatBool(*r.IsEmulator))
	}
	if r.IsProd != nil {
		add("prod", strconv.FormatBool(*r.IsProd))
	}
	if len(parts) == 0 {
		return "every device"
	}
	return strings.Join(parts, "; ")
}

func cmdDevice(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	switch sub {
	case "show", "tail":
		return cmdDeviceInventory(ctx, sub, args, stdout, stderr) // devices.go
	case "list":
		// The device inventory, unless --overrides (or --after, the
		// overrides listing's paging) asks for the pinned devices.
		old, rest := overridesListing(args)
		if !old {
			return cmdDeviceInventory(ctx, sub, args, stdout, stderr)
		}
		args = rest
	}
	fs := flag.NewFlagSet("device "+sub, flag.ContinueOnError)
	if sub == "overrides" {
		sub = "list" // the overrides listing (named device list before the inventory)
	}
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	channel, clear := new(string), new(bool)
	after, limit := new(string), new(int)
	switch sub {
	case "override":
		fs.StringVar(channel, "channel", "", "channel to pin the devices to")
		fs.BoolVar(clear, "clear", false, "remove the devices' overrides")
	case "list":
		fs.StringVar(after, "after", "", "start after this device id (paging)")
		fs.IntVar(limit, "limit", 100, "at most this many")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *app == "" {
		return usagef("", "device %s: --app is required", sub)
	}
	switch sub {
	case "override":
		if len(pos) == 0 {
			return usagef("", "device override: want DEVICE_ID [DEVICE_ID...]")
		}
		if (*channel == "") == !*clear {
			return usagef("", "device override: want --channel NAME or --clear")
		}
	case "list":
		if err := want(0, pos, "no arguments"); err != nil {
			return err
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "override":
		if err := c.SetOverrides(ctx, *app, *channel, pos); err != nil {
			return err
		}
		if *clear {
			fmt.Fprintf(stdout, "%d device(s) no longer overridden\n", len(pos))
		} else {
			fmt.Fprintf(stdout, "%d device(s) pinned to channel %s\n", len(pos), *channel)
		}
		return nil
	case "list":
		out, err := c.ListOverrides(ctx, *app, *after, *limit)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, out)
		}
		var rows [][]string
		for _, o := range out {
			rows = append(rows, []string{o.DeviceID, o.Channel, o.Source})
		}
		table(stdout, "DEVICE\tCHANNEL\tSOURCE", rows)
		return nil
	}
	return unknownSub("device", sub, subcommands("device"))
}

func cmdResolve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id")
	var d origin.DeviceRequest
	fs.StringVar(&d.DeviceID, "device", "", "device id (UUID)")
	fs.StringVar(&d.Platform, "platform", "", "ios, android or electron")
	fs.StringVar(&d.VersionBuild, "version-build", "", "native app version")
	fs.StringVar(&d.VersionName, "version-name", "builtin", "bundle the device runs")
	fs.StringVar(&d.PluginVersion, "plugin-version", "8.51.14", "plugin version")
	fs.StringVar(&d.CustomID, "custom-id", "", "custom id")
	fs.StringVar(&d.DefaultChannel, "default-channel", "", "the device's self-assigned channel")
	fs.BoolVar(&d.IsEmulator, "emulator", false, "the device is an emulator")
	dev := fs.Bool("dev", false, "a dev build (is_prod false)")
	at := fs.String("at", "", "evaluate the channel's maintenance windows at this instant (RFC 3339, e.g. 2026-12-05T01:30:00+01:00; default: now)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("", "resolve: --at %q: want an RFC 3339 time such as 2026-12-05T01:30:00Z", *at)
		}
		d.At = &t
	}
	if *app == "" || d.DeviceID == "" || d.Platform == "" || d.VersionBuild == "" {
		return usagef("", "resolve: --app, --device, --platform and --version-build are required")
	}
	d.IsProd = !*dev
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.Resolve(ctx, *app, d)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	if res.RevertToBuiltin {
		fmt.Fprintln(stdout, "revert to builtin (the store build)")
	} else if res.Update {
		fmt.Fprintf(stdout, "update to %s\n", res.Version)
	} else if res.Held != "" {
		fmt.Fprintf(stdout, "no update: %s (%s): %s held by maintenance windows (%s)\n", res.Code, res.Kind, res.HeldVersion, res.Held)
		if res.NextWindow != nil {
			fmt.Fprintf(stdout, "next window: %s\n", res.NextWindow.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintln(stdout, "next window: none within a year")
		}
	} else {
		fmt.Fprintf(stdout, "no update: %s (%s): %s\n", res.Code, res.Kind, res.Message)
	}
	why := "channel " + orDash(res.Channel) + " by rule " + orDash(res.Rule)
	switch {
	case res.Segment != "" && res.Cohort != "":
		why += " (segment " + res.Segment + ", cohort " + res.Cohort + ")"
	case res.Segment != "":
		why += " (segment " + res.Segment + ")"
	}
	switch res.Variant {
	case snapshot.VariantRollout:
		why += fmt.Sprintf("; in the rollout (bucket %d)", res.Bucket)
	case snapshot.VariantRolloutKept:
		why += fmt.Sprintf("; rollout paused, device keeps its rollout bundle (bucket %d)", res.Bucket)
	case snapshot.VariantAB:
		why += fmt.Sprintf("; A/B arm %s (bucket %d)", res.Arm, res.Bucket)
	case snapshot.VariantBelowNative:
		why += fmt.Sprintf("; native build %s is below the min native build %s", d.VersionBuild, res.MinNativeBuild)
		if res.Update {
			why += ": the channel's earlier bundle"
		}
	default:
		if res.Bucket >= 0 {
			why += fmt.Sprintf("; not in the rollout (bucket %d)", res.Bucket)
		}
	}
	fmt.Fprintf(stdout, "why: %s; snapshot rev %d\n", why, res.Rev)
	if len(res.Cohorts) > 0 {
		fmt.Fprintf(stdout, "cohorts: %s\n", strings.Join(res.Cohorts, ", "))
	}
	return nil
}

// channelArgs parses the flags of a `channel SUB NAME --app ID` command
// (app is its --app flag) and returns NAME.
func channelArgs(fs *flag.FlagSet, args []string, app *string) (string, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return "", err
	}
	if err := want(1, pos, "one channel NAME"); err != nil {
		return "", err
	}
	if *app == "" {
		return "", usagef("", "%s: --app is required", fs.Name())
	}
	return pos[0], nil
}
