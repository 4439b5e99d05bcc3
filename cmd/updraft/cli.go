package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// clientFlags are the flags every operator command takes.
type clientFlags struct {
	origin, apiKey, data string
	json                 bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.origin, "origin", config.Env("UPDRAFT_ORIGIN", config.DefaultOriginURL), "origin URL; env UPDRAFT_ORIGIN")
	fs.StringVar(&c.apiKey, "api-key", os.Getenv("UPDRAFT_API_KEY"), "API key: the admin key, or one from keys create; env UPDRAFT_API_KEY (default: read DATA/api-key)")
	fs.StringVar(&c.data, "data", config.DataDir(), "data folder whose api-key file is used when no key is given")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
}

func (c *clientFlags) client() (*client.Client, error) {
	key := c.apiKey
	if key == "" {
		b, err := os.ReadFile(config.APIKeyFile(c.data))
		if err != nil {
			return nil, fmt.Errorf("no API key: pass --api-key, set UPDRAFT_API_KEY, or run from the folder where `updraft serve` created %s (%v)", config.APIKeyFile(c.data), err)
		}
		key = strings.TrimSpace(string(b))
	}
	return client.New(c.origin, key), nil
}

// printList prints a list command's --json output: always an array ([]
// when empty), of the operator API's objects with their field names.
func printList[T any](w io.Writer, items []T) error {
	if items == nil {
		items = []T{}
	}
	return printJSON(w, items)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func cmdApp(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	if sub == "set" { // lifecycle.go: takes its own flags
		return cmdAppSet(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("app "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	var name string
	var yes bool
	switch sub {
	case "create":
		fs.StringVar(&name, "name", "", "display name")
	case "delete":
		fs.BoolVar(&yes, "yes", false, "confirm deleting the app and everything it owns")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		err = want(1, pos, "one app id, like com.example.app")
	case "delete":
		err = want(1, pos, "one app id")
	case "list":
		err = want(0, pos, "no arguments")
	}
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		a, err := c.CreateApp(ctx, pos[0], name)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, a)
		}
		fmt.Fprintf(stdout, "created app %s\n", a.ID)
		return nil
	case "delete":
		if !yes {
			return usagef("app delete", "app delete %s: deletes its bundles, channels, rollouts, segments, overrides and statistics for good: add --yes", pos[0])
		}
		d, err := c.DeleteApp(ctx, pos[0])
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, d)
		}
		fmt.Fprintf(stdout, "deleted app %s (%d bundles)\n", d.AppID, len(d.Bundles))
		return nil
	case "list":
		apps, err := c.ListApps(ctx)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, apps)
		}
		var rows [][]string
		for _, a := range apps {
			rows = append(rows, []string{a.ID, a.Name, a.CreatedAt.Format("2006-01-02 15:04"),
				strconv.FormatBool(a.ExposeMetadata), strconv.FormatBool(a.AllowDeviceCustomID)})
		}
		table(stdout, "ID\tNAME\tCREATED\tEXPOSE_METADATA\tDEVICE_CUSTOM_ID", rows)
		return nil
	}
	return unknownSub("app", sub, subcommands("app"))
}

func cmdBundle(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	if sub == "compatibility" { // native.go
		return cmdBundleCompatibility(ctx, args, stdout)
	}
	fs := flag.NewFlagSet("bundle "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	var version, encryptKey, runtimeVersion string
	var force, wait, expo bool
	var opt client.UploadOptions
	var nf nativeFlags
	switch sub {
	case "upload", "rebuild":
		fs.BoolVar(&wait, "wait", false, "wait for the origin's build (manifest, archive, deltas), with progress on a terminal; exit 1 if it fails")
	}
	switch sub {
	case "upload":
		fs.StringVar(&version, "version", "", "bundle version, semver (required)")
		fs.StringVar(&opt.Channel, "channel", "", "point this channel at the new bundle (created if missing)")
		fs.StringVar(&opt.MinUpdateVersion, "min-update-version", "", "oldest native version that may auto-update to it (disable_auto_update=metadata)")
		fs.StringVar(&opt.Comment, "comment", "", "comment shown to devices")
		fs.StringVar(&opt.Link, "link", "", "link shown to devices")
		fs.StringVar(&encryptKey, "encrypt-key", "", "encrypt end to end with this RSA-2048 private key (Capgo's .capgo_key_v2; make one with: updraft keys create-bundle-key)")
		fs.BoolVar(&expo, "expo", false, "PATH is the output folder of npx expo export: upload it as an Expo update (metadata.json, optional expoConfig.json)")
		fs.StringVar(&runtimeVersion, "runtime-version", "", "--expo: the runtime version the app's build embeds (default: expoConfig.json's runtimeVersion when it is a string)")
		nf.register(fs) // native.go
		fs.StringVar(&opt.MinNativeBuild, "min-native-build", "", "with --channel: the bundle needs this native build (version_build) or later; devices below keep the channel's previous bundle")
		fs.BoolVar(&opt.Force, "force", false, "with --channel: put the bundle on the channel even if its native packages are incompatible")
	case "rebuild":
		fs.BoolVar(&force, "force", false, "clear the bundle's manifest, canonical archive and deltas first")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *app == "" {
		return usagef("", "bundle %s: --app is required", sub)
	}
	switch sub {
	case "upload":
		if err := want(1, pos, "one PATH (a zip file or a folder)"); err != nil {
			return err
		}
		if version == "" {
			return usagef("", "bundle upload: --version is required")
		}
		if err := checkExpoFlags(expo, runtimeVersion, encryptKey); err != nil { // expo.go
			return err
		}
		if expo { // the export is checked before anything is sent
			if opt.Expo, err = client.ExpoFromExport(pos[0], runtimeVersion); err != nil {
				return err
			}
		} else if opt.NativePackages, err = nf.scan(pos[0], progressTo(stderr, cf.json) == nil, stderr); err != nil { // native.go
			return err
		}
		if (opt.MinNativeBuild != "" || opt.Force) && opt.Channel == "" {
			return usagef("", "bundle upload: --min-native-build and --force go with --channel")
		}
	case "list":
		if err := want(0, pos, "no arguments"); err != nil {
			return err
		}
	case "delete", "rebuild":
		if err := want(1, pos, "one bundle VERSION"); err != nil {
			return err
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "upload":
		var b store.Bundle
		if encryptKey != "" {
			b, err = uploadEncrypted(ctx, c, *app, version, pos[0], encryptKey, opt, stderr)
		} else {
			b, err = uploadPath(ctx, c, *app, version, pos[0], opt, progressTo(stderr, cf.json)) // progress.go
		}
		if err != nil {
			return err
		}
		if wait && cf.json { // the bundle as listed once built, with its deltas and build status
			bi, err := followBuild(ctx, c, b.AppID, b.Version, nil)
			if perr := printJSON(stdout, bi); err == nil {
				err = perr
			}
			return err
		}
		if cf.json {
			return printJSON(stdout, b)
		}
		fmt.Fprintf(stdout, "uploaded %s %s: %d bytes, sha256 %s\n", b.AppID, b.Version, b.Size, b.SHA256)
		if nf.from != "" {
			fmt.Fprintf(stdout, "native packages: %d recorded from %s\n", len(b.NativePackages), nf.from)
		}
		printExpo(stdout, b.Expo) // expo.go
		if opt.Channel != "" {
			fmt.Fprintf(stdout, "channel %s now serves %s\n", opt.Channel, b.Version)
			if opt.MinNativeBuild != "" {
				fmt.Fprintf(stdout, "to devices with native build %s or later; the others keep the channel's previous bundle\n", opt.MinNativeBuild)
			}
		}
		if wait {
			bi, err := followBuild(ctx, c, b.AppID, b.Version, progressTo(stderr, false))
			if err != nil {
				return err
			}
			printBuilt(stdout, bi)
		}
		return nil
	case "list":
		bs, err := c.ListBundles(ctx, *app)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, bs)
		}
		var rows [][]string
		for _, b := range bs {
			deltas := strconv.Itoa(len(b.Deltas))
			if st := b.DeltaStatus; st != nil && st.State != "ready" {
				deltas += fmt.Sprintf(" (%s %d/%d)", st.State, st.Done, st.Total)
				if st.Error != "" {
					deltas += ": " + st.Error
				}
			}
			smallest := "-"
			for _, d := range b.Deltas {
				if smallest == "-" || d.Size < mustAtoi(smallest) {
					smallest = strconv.FormatInt(d.Size, 10)
				}
			}
			rows = append(rows, []string{b.Version, strconv.FormatInt(b.Size, 10), b.SHA256, deltas, smallest, b.CreatedAt.Format("2006-01-02 15:04")})
		}
		table(stdout, "VERSION\tBYTES\tSHA256\tDELTAS\tSMALLEST_DELTA\tCREATED", rows)
		return nil
	case "delete": // lifecycle.go
		return bundleDelete(ctx, c, *app, pos, cf.json, stdout)
	case "rebuild": // rebuild.go
		return bundleRebuild(ctx, c, *app, pos, force, wait, cf.json, stdout, stderr)
	}
	return unknownSub("bundle", sub, subcommands("bundle"))
}

func cmdChannel(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("channel "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	bundle, def, disable, minNative := new(string), new(bool), new(string), new(string)
	force := new(bool)
	bools := map[string]*bool{}
	var windows, blackouts listFlag
	noWindows := new(bool)
	if sub == "set" {
		fs.Var(&windows, "window", `maintenance window "DAY HH:MM-HH:MM ZONE" (e.g. "Sat 01:00-05:00 Europe/Rome"; repeat for several): the channel's devices take updates only inside one; with --blackout, replaces the channel's schedule`)
		fs.Var(&blackouts, "blackout", `a date without updates, "YYYY-MM-DD" in the windows' zone or "YYYY-MM-DD ZONE" (repeatable)`)
		fs.BoolVar(noWindows, "no-windows", false, "remove the channel's maintenance windows and blackout dates: updates at any time")
		fs.StringVar(minNative, "min-native-build", "", `with --bundle: it needs this native build (version_build) or later; devices below keep the channel's previous bundle ("none" removes the channel's restriction)`)
		fs.BoolVar(force, "force", false, "put --bundle on the channel even if its native packages are incompatible with the channel's bundle")
		fs.StringVar(bundle, "bundle", "", `bundle version the channel serves; "builtin" sends its devices back to the store build`)
		fs.BoolVar(def, "default", false, "make it the default channel for its platforms (same as --public)")
		for _, o := range []struct{ name, help string }{
			{"public", "default channel for the platforms it enables"},
			{"ios", "serve iOS devices"}, {"android", "serve Android devices"}, {"electron", "serve Electron apps"},
			{"allow-device-self-set", "devices may assign themselves to it (defaultChannel / setChannel)"},
			{"allow-emulator", "serve emulators"}, {"allow-dev", "serve dev builds"}, {"allow-prod", "serve prod builds"},
			{"allow-device", "serve physical devices"},
			{"disable-auto-update-under-native", "refuse bundles older than the native app version"},
		} {
			bools[o.name] = fs.Bool(o.name, false, o.help)
		}
		fs.StringVar(disable, "disable-auto-update", "", "largest jump devices take on their own: major, minor, patch, metadata or none")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *app == "" {
		return usagef("", "channel %s: --app is required", sub)
	}
	if sub == "list" {
		if err := want(0, pos, "no arguments"); err != nil {
			return err
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "set":
		if err := want(1, pos, "one channel NAME"); err != nil {
			return err
		}
		var p store.ChannelPatch
		fs.Visit(func(f *flag.Flag) {
			var v bool
			if b := bools[f.Name]; b != nil {
				v = *b
			}
			switch f.Name {
			case "bundle":
				p.Bundle = bundle
			case "default":
				p.Public = def
			case "disable-auto-update":
				p.DisableAutoUpdate = disable
			case "public":
				p.Public = &v
			case "ios":
				p.IOS = &v
			case "android":
				p.Android = &v
			case "electron":
				p.Electron = &v
			case "allow-device-self-set":
				p.AllowDeviceSelfSet = &v
			case "allow-emulator":
				p.AllowEmulator = &v
			case "allow-dev":
				p.AllowDev = &v
			case "allow-prod":
				p.AllowProd = &v
			case "allow-device":
				p.AllowDevice = &v
			case "disable-auto-update-under-native":
				p.DisableAutoUpdateUnderNative = &v
			case "min-native-build":
				if *minNative == "none" {
					*minNative = ""
				}
				p.MinNativeBuild = minNative
			}
		})
		if *noWindows && (len(windows) > 0 || len(blackouts) > 0) {
			return usagef("", "channel set: --no-windows goes without --window and --blackout")
		}
		if *noWindows {
			p.Windows = &snapshot.Windows{}
		}
		if ws, err := parseSchedule(windows, blackouts); err != nil {
			return usagef("", "channel set: %v", err)
		} else if ws != nil {
			p.Windows = ws
		}
		ch, err := c.SetChannelForce(ctx, *app, pos[0], p, *force)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, ch)
		}
		fmt.Fprintf(stdout, "channel %s of %s: bundle=%s default=%v\n", ch.Name, *app, orDash(ch.Bundle), ch.Public)
		if g := ch.NativeGate; g != nil {
			fmt.Fprintf(stdout, "%s goes to devices with native build %s or later; below: %s\n", ch.Bundle, g.MinBuild, describeBelow(g))
		}
		if ws := ch.Windows; ws != nil {
			fmt.Fprintf(stdout, "updates only in maintenance windows: %s\n", describeWindows(ws))
		} else if *noWindows {
			fmt.Fprintln(stdout, "no maintenance windows: updates at any time")
		}
		for _, d := range ch.Demoted {
			fmt.Fprintf(stdout, "channel %s is no longer a default channel\n", d)
		}
		return nil
	case "list":
		chs, err := c.ListChannels(ctx, *app)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, chs)
		}
		var rows [][]string
		for _, ch := range chs {
			var plats []string
			for _, p := range []struct {
				on   bool
				name string
			}{{ch.IOS, "ios"}, {ch.Android, "android"}, {ch.Electron, "electron"}} {
				if p.on {
					plats = append(plats, p.name)
				}
			}
			preview := "-"
			if ch.Preview() {
				preview = "until " + time.Unix(ch.PreviewExpires, 0).UTC().Format(time.RFC3339)
			}
			windows := "-"
			if ch.Windows != nil {
				windows = describeWindows(ch.Windows)
			}
			rows = append(rows, []string{ch.Name, orDash(ch.Bundle), strconv.FormatBool(ch.Public), strings.Join(plats, ","),
				strconv.FormatBool(ch.AllowDeviceSelfSet), ch.DisableAutoUpdate, describeSplit(ch), preview, windows})
		}
		table(stdout, "NAME\tBUNDLE\tDEFAULT\tPLATFORMS\tSELF_SET\tDISABLE_AUTO_UPDATE\tSPLIT\tPREVIEW\tWINDOWS", rows)
		return nil
	}
	return unknownSub("channel", sub, subcommands("channel"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mustAtoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// parseSchedule reads --window and --blackout values; nil when there are none.
func parseSchedule(windows, blackouts []string) (*snapshot.Windows, error) {
	if len(windows) == 0 && len(blackouts) == 0 {
		return nil, nil
	}
	ws := &snapshot.Windows{}
	for _, w := range windows {
		win, err := snapshot.ParseWindow(w)
		if err != nil {
			return nil, fmt.Errorf("--window: %w", err)
		}
		ws.Weekly = append(ws.Weekly, win)
	}
	for _, b := range blackouts {
		bo, err := snapshot.ParseBlackout(b)
		if err != nil {
			return nil, fmt.Errorf("--blackout: %w", err)
		}
		ws.Blackouts = append(ws.Blackouts, bo)
	}
	return ws, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// describeWindows is a channel's maintenance schedule on one line.
func describeWindows(ws *snapshot.Windows) string {
	var parts []string
	for _, w := range ws.Weekly {
		parts = append(parts, w.String())
	}
	if len(parts) == 0 {
		parts = append(parts, "any day")
	}
	s := strings.Join(parts, "; ")
	if len(ws.Blackouts) > 0 {
		var bs []string
		for _, b := range ws.Blackouts {
			bs = append(bs, b.String())
		}
		s += "; never on " + strings.Join(bs, ", ")
	}
	return s
}
