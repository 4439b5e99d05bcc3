package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// cmdCohort is `updraft cohort add|import|list|remove`.
func cmdCohort(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cohort "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	app := fs.String("app", "", "app id (required)")
	rule := new(string)
	if sub == "add" {
		fs.StringVar(rule, "rule", "", `behaviour rule (required): "new:7d", "active:5/7d", "power:10%", "power:10%/app_moved_to_foreground" or "failing:7d"`)
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch sub {
	case "add", "import", "remove", "list":
	default:
		return usagef("", "cohort: unknown subcommand %q (want add, import, list or remove)", sub)
	}
	if *app == "" {
		return usagef("", "cohort %s: --app is required", sub)
	}
	switch sub {
	case "import":
		if err := want(2, pos, "a cohort NAME and a FILE (- for standard input)"); err != nil {
			return err
		}
	case "add", "remove":
		if err := want(1, pos, "one cohort NAME"); err != nil {
			return err
		}
		if sub == "add" && *rule == "" {
			return usagef("", "cohort add: --rule is required")
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
		res, err := c.AddCohort(ctx, *app, pos[0], *rule)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, res)
		}
		verb := "recomputed"
		if res.Created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "cohort %s (%s) %s: %d members (+%d, -%d); recomputed every hour\n", res.Name, res.Rule, verb, res.Members, res.Added, res.Removed)
		return nil
	case "import":
		var in io.Reader = os.Stdin
		if pos[1] != "-" {
			f, err := os.Open(pos[1])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		// Streamed: the file is never read whole into memory here; the
		// origin parses it as it arrives.
		br := bufio.NewReaderSize(in, 64<<10)
		ctype := "text/csv"
		if b, _ := br.Peek(512); firstNonBlank(b) == '{' {
			ctype = "application/x-ndjson"
		}
		res, err := c.ImportCohort(ctx, *app, pos[0], br, ctype)
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(stdout, res)
		}
		verb := "updated"
		if res.Created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "cohort %s %s: %d members (+%d, -%d)\n", res.Name, verb, res.Members, res.Added, res.Removed)
		return nil
	case "list":
		list, err := c.ListCohorts(ctx, *app)
		if err != nil {
			return err
		}
		if cf.json {
			return printList(stdout, list)
		}
		var rows [][]string
		for _, co := range list {
			kind := "imported"
			if co.Rule != "" {
				kind = co.Rule
			}
			rows = append(rows, []string{co.Name, kind, strconv.FormatInt(co.Members, 10),
				fmt.Sprintf("+%d -%d", co.Added, co.Removed), co.UpdatedAt.UTC().Format(time.RFC3339)})
		}
		table(stdout, "NAME\tKIND\tMEMBERS\tLAST CHANGE\tUPDATED", rows)
		return nil
	default: // remove
		if err := c.RemoveCohort(ctx, *app, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cohort %s removed\n", pos[0])
		return nil
	}
}

func firstNonBlank(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}
