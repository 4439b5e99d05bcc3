// Command updraft runs Updraft's roles (serve, origin, edge) and its
// operator CLI (app, bundle, channel). It parses flags and wires packages;
// the logic lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ue *usageError
		msg := err.Error()
		if errors.As(err, &ue) && ue.cmd != "" && !strings.HasPrefix(msg, strings.Fields(ue.cmd)[0]) {
			msg = ue.cmd + ": " + msg // name the command
		}
		fmt.Fprintln(os.Stderr, "updraft:", msg)
		if ue != nil {
			if ue.cmd != "" {
				fmt.Fprintf(os.Stderr, "Run \"updraft %s --help\" for its usage, flags and examples.\n", ue.cmd)
			} else {
				fmt.Fprintln(os.Stderr, "Run \"updraft --help\" for the commands.")
			}
		}
	}
	os.Exit(exitCode(err))
}

// run runs the command line args; its error decides the exit status
// (exitCode: a usageError exits 2, any other error 1).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	var h *helpRequest
	if errors.As(err, &h) {
		printCommandHelp(stdout, h.fs)
		if helpShown != nil {
			helpShown(h.fs)
		}
		return nil
	}
	return err
}

// helpShown, when set (by tests), sees the flag set of every command help printed.
var helpShown func(*flag.FlagSet)

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return usagef("", "no command given")
	}
	cmd, rest := args[0], args[1:]
	if _, ok := groups[cmd]; ok {
		subs := subcommands(cmd)
		sub := ""
		if len(rest) > 0 {
			sub = rest[0]
		}
		switch {
		case sub == "-h" || sub == "--help" || sub == "-help" || sub == "help":
			printGroupHelp(stdout, cmd)
			return nil
		case !slices.Contains(subs, sub):
			return unknownSub(cmd, sub, subs)
		}
		return withCmd(cmd+" "+sub, runSub(ctx, cmd, sub, rest[1:], stdout, stderr))
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, rest, stderr)
	case "origin":
		err = cmdOrigin(ctx, rest, stderr)
	case "edge":
		err = cmdEdge(ctx, rest, stderr)
	case "resolve":
		err = cmdResolve(ctx, rest, stdout, stderr)
	case "stats":
		err = cmdStats(ctx, rest, stdout, stderr)
	case "bench":
		err = cmdBench(ctx, rest, stdout, stderr)
	case "gc": // lifecycle.go
		err = cmdGC(ctx, rest, stdout, stderr)
	case "audit": // audit.go
		err = cmdAudit(ctx, rest, stdout, stderr)
	case "migrate": // migrate.go
		err = cmdMigrate(ctx, rest, stdout, stderr)
	case "help", "-h", "--help", "-help":
		return cmdHelp(ctx, rest, stdout, stderr)
	default:
		msg := fmt.Sprintf("unknown command %q", cmd)
		if c := closest(cmd, commandNames()); c != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", c)
		}
		return usagef("", "%s", msg)
	}
	return withCmd(cmd, err)
}

// runSub runs the subcommand sub of group (both valid).
func runSub(ctx context.Context, group, sub string, args []string, stdout, stderr io.Writer) error {
	switch group {
	case "app":
		return cmdApp(ctx, sub, args, stdout, stderr)
	case "bundle":
		return cmdBundle(ctx, sub, args, stdout, stderr)
	case "channel":
		switch sub {
		case "rollout":
			return cmdRollout(ctx, args, stdout, stderr)
		case "ab":
			return cmdAB(ctx, args, stdout, stderr)
		case "guard":
			return cmdGuard(ctx, args, stdout, stderr)
		case "history": // audit.go
			return cmdChannelHistory(ctx, args, stdout, stderr)
		case "preview": // preview.go
			return cmdChannelPreview(ctx, args, stdout, stderr)
		}
		return cmdChannel(ctx, sub, args, stdout, stderr)
	case "segment":
		return cmdSegment(ctx, sub, args, stdout, stderr)
	case "cohort": // cohorts.go
		return cmdCohort(ctx, sub, args, stdout, stderr)
	case "device":
		return cmdDevice(ctx, sub, args, stdout, stderr)
	case "keys":
		switch sub {
		case "rotate": // keys.go
			return cmdKeysRotate(ctx, args, stdout, stderr)
		case "create":
			return cmdKeysCreate(ctx, args, stdout, stderr)
		case "list":
			return cmdKeysList(ctx, args, stdout, stderr)
		case "revoke":
			return cmdKeysRevoke(ctx, args, stdout, stderr)
		case "create-expo-signing": // expo.go
			return cmdKeysExpoSigning(args, stdout)
		}
		return cmdKeys(sub, args, stdout, stderr)
	case "delta":
		return cmdDelta(ctx, sub, args, stdout, stderr)
	case "webhook": // webhooks.go
		return cmdWebhook(ctx, sub, args, stdout, stderr)
	case "config":
		return cmdConfigCheck(args, stdout, stderr)
	}
	return unknownSub(group, sub, subcommands(group))
}

// withCmd names the command in a usage error that does not name one yet
// (for its --help hint).
func withCmd(cmd string, err error) error {
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = cmd
	}
	return err
}

// cmdHelp is `updraft help [COMMAND [SUBCOMMAND]]`.
func cmdHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stdout)
		return nil
	}
	return run(ctx, append(slices.Clone(args), "--help"), stdout, stderr)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("", "--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
