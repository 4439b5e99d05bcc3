package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/origin"
	"github.com/updraft-cdn/updraft/origin/store"
)

// cmdStats prints an app's update analytics: per bundle, then per segment.
func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id")
	channel := fs.String("channel", "", "only this channel")
	segment := fs.String("segment", "", "only this segment (override, self_assigned, segment:NAME, default)")
	platform := fs.String("platform", "", "only this platform (ios, android, electron)")
	since := fs.Duration("since", 24*time.Hour, "how far back to look")
	adoption := fs.Bool("adoption", false, "adoption speed and install success per release and segment, and release timing")
	version := fs.String("version", "", "with --adoption: only this bundle version")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *app == "" || len(pos) > 0 {
		return usagef("", "stats: want `updraft stats --app ID [--channel NAME] [--segment S] [--platform P] [--since 24h]` or `updraft stats --app ID --adoption [--channel NAME] [--version V] [--segment S]`")
	}
	if !*adoption && *version != "" {
		return usagef("", "stats: --version goes with --adoption")
	}
	if *adoption {
		var bad string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "platform" || f.Name == "since" {
				bad = f.Name
			}
		})
		if bad != "" {
			return usagef("", "stats: --%s does not go with --adoption (a release is followed from its start; filter by --channel, --segment, --version)", bad)
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if *adoption {
		q := url.Values{}
		for k, v := range map[string]string{"channel": *channel, "segment": *segment, "version": *version} {
			if v != "" {
				q.Set(k, v)
			}
		}
		rep, err := c.Adoption(ctx, *app, q)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, rep)
		}
		printAdoption(stdout, rep)
		return nil
	}
	q := url.Values{"from": {strconv.FormatInt(time.Now().Add(-*since).Unix(), 10)}}
	for k, v := range map[string]string{"channel": *channel, "segment": *segment, "platform": *platform} {
		if v != "" {
			q.Set(k, v)
		}
	}
	rep, err := c.Stats(ctx, *app, q)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, rep)
	}
	scope := "all channels"
	if *channel != "" {
		scope = "channel " + *channel
	}
	if *segment != "" {
		scope += ", segment " + *segment
	}
	if *platform != "" {
		scope += ", " + *platform
	}
	fmt.Fprintf(stdout, "%s, %s, %s to %s: %d events\n\n", rep.AppID, scope,
		rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.Events)
	row := func(v origin.VersionStats, first string) []string {
		r := []string{v.Version, strconv.FormatInt(v.Devices, 10), strconv.FormatInt(v.Downloads, 10),
			strconv.FormatInt(v.Installs, 10), strconv.FormatInt(v.Failures, 10),
			pct(v.FailureRate), pct(v.FailureRateLower), topFailures(v.FailuresByAction)}
		if first != "" {
			r = append([]string{first}, r...)
		}
		return r
	}
	var rows [][]string
	for _, v := range rep.Bundles {
		rows = append(rows, row(v, ""))
	}
	table(stdout, "BUNDLE\tDEVICES\tDOWNLOADS\tINSTALLS\tFAILURES\tFAIL RATE\tLOWER 95%\tTOP FAILURES", rows)
	rows = rows[:0]
	for _, v := range rep.Segments {
		rows = append(rows, row(v, v.Segment))
	}
	if len(rows) > 0 {
		fmt.Fprintln(stdout)
		table(stdout, "SEGMENT\tBUNDLE\tDEVICES\tDOWNLOADS\tINSTALLS\tFAILURES\tFAIL RATE\tLOWER 95%\tTOP FAILURES", rows)
	}
	if len(rep.Cohorts) > 0 {
		fmt.Fprintln(stdout)
		printCohortStats(stdout, rep.Cohorts, shortDuration(*since))
	}
	return nil
}

// printCohortStats prints the cohorts of a stats report: members now, and
// the members added and removed (and by how many changes) over the report's
// window and over 7 days.
func printCohortStats(w io.Writer, cohorts []origin.CohortStats, window string) {
	churn := func(c store.CohortChurn) string {
		return fmt.Sprintf("+%d -%d (%d)", c.Added, c.Removed, c.Changes)
	}
	var rows [][]string
	for _, c := range cohorts {
		kind, changed := "imported", "-"
		if c.Rule != "" {
			kind = c.Rule
		}
		if c.ChangedAt != nil {
			changed = c.ChangedAt.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{c.Name, kind, strconv.FormatInt(c.Members, 10), churn(c.Churn), churn(c.Churn7d), changed,
			orDash(strings.Join(c.Segments, ","))})
	}
	table(w, "COHORT\tKIND\tMEMBERS\tCHURN "+strings.ToUpper(window)+"\tCHURN 7D\tLAST CHANGE\tSEGMENTS", rows)
}

// shortDuration writes d without trailing zero units: 24h, 90m, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// printAdoption prints an adoption report: a table of releases by
// segment, then the release timing per segment.
func printAdoption(w io.Writer, rep origin.AdoptionReport) {
	fmt.Fprintf(w, "%s: adoption as of %s (active: seen within %d days)\n\n", rep.AppID, rep.At.Format(time.RFC3339),
		rep.ActiveWindowSeconds/86400)
	dur := func(s *int64) string {
		if s == nil {
			return "-"
		}
		return (time.Duration(*s) * time.Second).String()
	}
	var rows [][]string
	for _, r := range rep.Releases {
		for _, s := range r.Segments {
			seg := s.Segment
			if seg == "" {
				seg = "(all)"
			}
			rate := "-"
			if s.SuccessRate != nil {
				rate = pct(*s.SuccessRate)
			}
			rows = append(rows, []string{r.Channel, r.Version, r.Start.Format(time.RFC3339), seg, strconv.FormatInt(s.Active, 10),
				strconv.FormatInt(s.Devices, 10), pct(s.Share), dur(s.TimeTo50), dur(s.TimeTo90), dur(s.TimeTo95), pct(s.Share24h),
				strconv.FormatInt(s.Installs, 10), strconv.FormatInt(s.Failures, 10), rate})
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "no release")
		return
	}
	table(w, "CHANNEL\tBUNDLE\tSTART\tSEGMENT\tACTIVE\tDEVICES\tSHARE\tTO 50%\tTO 90%\tTO 95%\tIN 24H\tINSTALLS\tFAILURES\tSUCCESS", rows)
	if len(rep.Timing) == 0 {
		return
	}
	fmt.Fprintln(w, "\nRelease timing (UTC), installs/failures:")
	for _, t := range rep.Timing {
		hours, wd := t.Cells()
		fmt.Fprintf(w, "  %s: by hour: %s; by weekday: %s\n", orDash(t.Segment), strings.Join(hours, ", "), strings.Join(wd, ", "))
	}
}

func pct(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }

func topFailures(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	for i := range all { // few entries: selection order by count, then name
		for j := i + 1; j < len(all); j++ {
			if all[j].v > all[i].v || all[j].v == all[i].v && all[j].k < all[i].k {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	var parts []string
	for i, e := range all {
		if i == 3 {
			break
		}
		parts = append(parts, e.k+"="+strconv.FormatInt(e.v, 10))
	}
	return strings.Join(parts, " ")
}

// cmdGuard shows, sets or removes a channel's rollout guard.
func cmdGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("channel guard", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id")
	var g store.Guard
	window := fs.Duration("window", 0, "look at install outcomes this far back (default 10m)")
	fs.IntVar(&g.MinAttempts, "min-attempts", 0, "devices that must have reported before the guard may act (default 50)")
	fs.IntVar(&g.MinFailures, "min-failures", 0, "failed devices needed before the guard may act (default 5)")
	threshold := fs.String("threshold", "", "failure rate that trips the guard, in percent (default 10)")
	fs.Float64Var(&g.Confidence, "confidence", 0, "confidence of the Wilson lower bound compared to the threshold (default 0.95)")
	fs.StringVar(&g.Action, "action", "", "what to do: pause (default), rollback or notify")
	cooldown := fs.Duration("cooldown", 0, "wait at least this long between two actions (default 5m)")
	fs.IntVar(&g.MinPrefixes, "min-prefixes", 0, "failures must come from at least this many client networks, /24 or /48 (default 5; 1: any)")
	fs.IntVar(&g.MaxDevicesPerPrefix, "max-devices-per-prefix", 0, "one client network counts for at most this many devices, its failure rate kept (default 25)")
	fs.BoolVar(&g.CountNewDevices, "count-new-devices", false, "also count devices the origin first saw after the rollout began (default: only devices established before it)")
	show := fs.Bool("show", false, "show the guard, its latest evaluation and actions (the default without other flags)")
	remove := fs.Bool("remove", false, "remove the guard")
	name, err := channelArgs(fs, args, app)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	set := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "window", "min-attempts", "min-failures", "threshold", "confidence", "action", "cooldown",
			"min-prefixes", "max-devices-per-prefix", "count-new-devices":
			set = true
		}
	})
	var info origin.GuardInfo
	switch {
	case *remove:
		if err := c.RemoveGuard(ctx, *app, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rollout guard of channel %s removed\n", name)
		return nil
	case set && !*show:
		// Change only what the flags say: start from the current guard.
		cur := store.Guard{}
		if old, err := c.Guard(ctx, *app, name); err == nil {
			cur = old.Guard
		}
		var err error
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "window":
				cur.WindowSeconds = int(window.Seconds())
			case "cooldown":
				cur.CooldownSeconds = int(cooldown.Seconds())
			case "min-attempts":
				cur.MinAttempts = g.MinAttempts
			case "min-failures":
				cur.MinFailures = g.MinFailures
			case "confidence":
				cur.Confidence = g.Confidence
			case "action":
				cur.Action = g.Action
			case "min-prefixes":
				cur.MinPrefixes = g.MinPrefixes
			case "max-devices-per-prefix":
				cur.MaxDevicesPerPrefix = g.MaxDevicesPerPrefix
			case "count-new-devices":
				cur.CountNewDevices = g.CountNewDevices
			case "threshold":
				p, perr := strconv.ParseFloat(strings.TrimSuffix(*threshold, "%"), 64)
				if perr != nil || p <= 0 || p > 100 {
					err = usagef("", "channel guard: --threshold %q: want a percentage like 10 or 2.5", *threshold)
				}
				cur.ThresholdBPS = int(p*100 + 0.5)
			}
		})
		if err != nil {
			return err
		}
		if info, err = c.SetGuard(ctx, *app, name, cur); err != nil {
			return err
		}
	default:
		if info, err = c.Guard(ctx, *app, name); err != nil {
			return err
		}
	}
	if cf.json {
		return printJSON(stdout, info)
	}
	gd := info.Guard
	fmt.Fprintf(stdout, "rollout guard of %s/%s: %s when the failure rate's %.0f%% lower bound reaches %s over %s (at least %d devices, %d failed); cooldown %s\n",
		info.AppID, info.Channel, gd.Action, 100*gd.Confidence, pct(float64(gd.ThresholdBPS)/10000),
		time.Duration(gd.WindowSeconds)*time.Second, gd.MinAttempts, gd.MinFailures, time.Duration(gd.CooldownSeconds)*time.Second)
	devices := "devices established before the rollout"
	if gd.CountNewDevices {
		devices = "all devices"
	}
	fmt.Fprintf(stdout, "counts %s; failures from at least %d client networks; at most %d devices per network\n", devices, gd.MinPrefixes, gd.MaxDevicesPerPrefix)
	if st := info.Status; st != nil {
		fmt.Fprintf(stdout, "status: %s", st.State)
		if st.Bundle != "" {
			fmt.Fprintf(stdout, " (bundle %s: %d devices, %d failed, rate %s, lower bound %s; failures from %d networks; not counted: %d new devices, %d over their network's cap)",
				st.Bundle, st.Attempts, st.Failures, pct(st.FailureRate), pct(st.LowerBound), st.FailurePrefixes, st.NewDevices, st.CappedDevices)
		}
		fmt.Fprintln(stdout)
	}
	if len(info.Actions) > 0 {
		var rows [][]string
		for _, a := range info.Actions {
			rows = append(rows, []string{a.At.Format(time.RFC3339), a.Action, a.Bundle, strconv.FormatInt(a.Attempts, 10),
				strconv.FormatInt(a.Failures, 10), pct(a.FailureRate), pct(a.LowerBound), orDash(a.Error)})
		}
		fmt.Fprintln(stdout)
		table(stdout, "AT\tACTION\tBUNDLE\tDEVICES\tFAILED\tRATE\tLOWER\tERROR", rows)
	}
	return nil
}
