package main

// updraft audit and updraft channel history: the origin's audit trail
// (who changed what, from where, before → after) and a channel's
// deployment history drawn from it.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/updraft-cdn/updraft/origin/store"
)

// auditPage is the most records one request asks for.
const auditPage = 1000

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "only this app's records (default: every app's and the installation's)")
	since := fs.String("since", "", "only records from then on: a duration back from now (24h, 7d) or an RFC 3339 time")
	action := fs.String("action", "", "only these actions, comma-separated (e.g. channel.changed,rollout.paused)")
	target := fs.String("target", "", "only records about this target (a channel, bundle version, segment…)")
	after := fs.Int64("after", 0, "only records after this id (to continue a listing)")
	limit := fs.Int("limit", 1000, "at most this many records, oldest first")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := want(0, pos, "no arguments"); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("", "--limit %d: want 1 or more", *limit)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"since": *since, "action": *action, "target": *target} {
		if v != "" {
			q.Set(k, v)
		}
	}
	recs := []store.AuditRecord{}
	next, more := *after, false
	for {
		q.Set("after", strconv.FormatInt(next, 10))
		q.Set("limit", strconv.Itoa(min(auditPage, *limit-len(recs)+1)))
		page, err := c.Audit(ctx, *app, q)
		if err != nil {
			return err
		}
		if len(page.Records) == 0 {
			break
		}
		recs = append(recs, page.Records...)
		next = page.NextAfter
		if len(recs) > *limit {
			recs, more = recs[:*limit], true
			break
		}
	}
	if cf.json {
		return printList(stdout, recs)
	}
	if len(recs) == 0 {
		fmt.Fprintln(stdout, "no audit records")
		return nil
	}
	rows := make([][]string, len(recs))
	for i, r := range recs {
		rows[i] = []string{strconv.FormatInt(r.ID, 10), auditTime(r.At), r.Actor, orDash(r.Addr), orDash(r.App), r.Action, orDash(r.Target), auditChange(r)}
	}
	table(stdout, "ID\tTIME (UTC)\tACTOR\tADDR\tAPP\tACTION\tTARGET\tBEFORE → AFTER", rows)
	if more {
		fmt.Fprintf(stderr, "more records: add --after %d\n", recs[len(recs)-1].ID)
	}
	return nil
}

func cmdChannelHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("channel history", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	limit := fs.Int("limit", 50, "at most this many entries, newest first (1-1000)")
	before := fs.Int64("before", 0, "only entries older than this record id (to see older ones)")
	since := fs.String("since", "", "only entries from then on: a duration back from now (24h, 7d) or an RFC 3339 time")
	name, err := channelArgs(fs, args, app)
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > auditPage {
		return usagef("", "--limit %d: want 1..%d", *limit, auditPage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *before > 0 {
		q.Set("before", strconv.FormatInt(*before, 10))
	}
	if *since != "" {
		q.Set("since", *since)
	}
	page, err := c.ChannelHistory(ctx, *app, name, q)
	if err != nil {
		return err
	}
	if cf.json {
		return printList(stdout, page.Records)
	}
	if len(page.Records) == 0 {
		fmt.Fprintf(stdout, "channel %s of %s: no history\n", name, *app)
		return nil
	}
	rows := make([][]string, len(page.Records))
	for i, r := range page.Records {
		rows[i] = []string{auditTime(r.At), r.Actor, r.Action, auditChange(r)}
	}
	table(stdout, "TIME (UTC)\tBY\tACTION\tBEFORE → AFTER", rows)
	if page.NextBefore != 0 {
		fmt.Fprintf(stderr, "older entries: add --before %d\n", page.NextBefore)
	}
	return nil
}

func auditTime(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") }

// auditChange is a record's before → after, each compact JSON ("-": none).
func auditChange(r store.AuditRecord) string {
	return compactJSON(r.Before) + " → " + compactJSON(r.After)
}

func compactJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return "-"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}
