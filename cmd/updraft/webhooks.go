package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/updraft-cdn/updraft/config"
	"github.com/updraft-cdn/updraft/origin/api"
)

// cmdWebhook runs `updraft webhook add|list|remove|deliveries|test`
// (docs/cli.md, "Webhooks").
func cmdWebhook(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	var req api.WebhookRequest
	events, limit := new(string), new(int)
	switch sub {
	case "add":
		fs.StringVar(&req.URL, "url", "", "receiver URL, http:// or https:// (required)")
		fs.StringVar(events, "events", "", "comma-separated audit actions, e.g. bundle.uploaded,channel.changed,rollout.paused,guard.acted; rollout.* for a group, * for all (required)")
		fs.StringVar(&req.App, "app", "", "only this app's events (default: every app's and the installation's own)")
		fs.StringVar(&req.Format, "format", "json", "json (signed payload) or slack ({\"text\": \"…\"} for a Slack incoming webhook)")
		fs.StringVar(&req.Secret, "secret", "", "signing secret (default: 32 random bytes, printed once)")
	case "deliveries":
		fs.IntVar(limit, "limit", 20, "at most this many, newest first (1-1000)")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	var id int64
	switch sub {
	case "add", "list":
		if err := want(0, pos, "no arguments"); err != nil {
			return err
		}
	default:
		if err := want(1, pos, "one webhook ID (updraft webhook list)"); err != nil {
			return err
		}
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id < 1 {
			return usagef("", "webhook %s: ID %q: want a webhook id like 3 (updraft webhook list)", sub, pos[0])
		}
	}
	if sub == "add" {
		req.Events = splitList(*events)
		if req.URL == "" || len(req.Events) == 0 {
			return usagef("", "webhook add: --url and --events are required")
		}
		if req.Format != "json" && req.Format != "slack" {
			return usagef("", "webhook add: --format %q: want json or slack", req.Format)
		}
	}
	if sub == "deliveries" && (*limit < 1 || *limit > 1000) {
		return usagef("", "webhook deliveries: --limit %d: want 1 to 1000", *limit)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		w, err := c.AddWebhook(ctx, req)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, w)
		}
		fmt.Fprintf(stdout, "webhook %d: %s gets %s (%s, %s)\n", w.ID, w.URL, strings.Join(w.Events, ","), orAll(w.App), w.Format)
		fmt.Fprintf(stdout, "  secret: %s\n  (shown once: receivers verify Updraft-Signature with it; see docs/cli.md, \"Webhooks\")\n", w.Secret)
		return nil
	case "list":
		hooks, err := c.ListWebhooks(ctx)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, hooks)
		}
		var rows [][]string
		for _, w := range hooks {
			rows = append(rows, []string{strconv.FormatInt(w.ID, 10), orAll(w.App), strings.Join(w.Events, ","), w.Format, w.URL,
				orDash(w.CreatedBy), w.CreatedAt.UTC().Format(time.RFC3339)})
		}
		table(stdout, "ID\tAPP\tEVENTS\tFORMAT\tURL\tBY\tCREATED", rows)
		return nil
	case "remove":
		w, err := c.RemoveWebhook(ctx, id)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, w)
		}
		fmt.Fprintf(stdout, "webhook %d (%s) removed with its delivery log\n", w.ID, w.URL)
		return nil
	case "deliveries":
		ds, err := c.WebhookDeliveries(ctx, id, *limit)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, ds)
		}
		var rows [][]string
		for _, d := range ds {
			next := "-"
			if d.State == "pending" {
				next = d.NextAttempt.UTC().Format(time.RFC3339)
			}
			status := "-"
			if d.LastStatus != 0 {
				status = strconv.Itoa(d.LastStatus)
			}
			rows = append(rows, []string{d.UID, strconv.FormatInt(d.AuditID, 10), d.Event, d.State, strconv.Itoa(d.Attempts), status,
				strconv.FormatInt(d.DurationMs, 10) + "ms", next, orDash(d.LastError), d.CreatedAt.UTC().Format(time.RFC3339)})
		}
		table(stdout, "DELIVERY\tAUDIT\tEVENT\tSTATE\tATTEMPTS\tSTATUS\tTOOK\tNEXT\tERROR\tQUEUED", rows)
		return nil
	case "test":
		res, err := c.TestWebhook(ctx, id)
		if err != nil {
			return err
		}
		if cf.json {
			if err := printJSON(stdout, res); err != nil {
				return err
			}
		}
		if !res.OK {
			return fmt.Errorf("webhook %d: test ping %s not delivered: %s", id, res.ID, res.Error)
		}
		if !cf.json {
			fmt.Fprintf(stdout, "webhook %d: test ping %s delivered (HTTP %d in %dms)\n", id, res.ID, res.Status, res.DurationMs)
		}
		return nil
	}
	return unknownSub("webhook", sub, subcommands("webhook"))
}

func orAll(app string) string {
	if app == "" {
		return "all apps"
	}
	return app
}

// webhookFlags registers the origin's webhook delivery flags.
func webhookFlags(fs *flag.FlagSet, oc *config.Origin) {
	fs.DurationVar(&oc.WebhookPoll, "webhook-poll", 0, "how often the origin looks for audit records to deliver to webhooks (0: 1s; its own records are sent at once)")
}
