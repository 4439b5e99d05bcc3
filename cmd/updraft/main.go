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
	"strings"
	"syscall"
)

const usage = `updraft: live-update edge network for Capacitor apps

Roles:
  updraft serve   [--data DIR] [--edge-listen ADDR] [--origin-listen ADDR]   origin + edge in one process
  updraft origin  [--data DIR] [--listen ADDR]                               origin only
  updraft edge    --upstream URL --origin-pubkey KEY --edge-key-file FILE [--data DIR] [--listen ADDR]
                                                                             edge following an origin or parent edge
  updraft keys show [--data DIR]                                             origin public key and edge key file
  updraft keys create-bundle-key [--dir DIR] [--force]                      RSA-2048 pair for end-to-end encrypted bundles (Capgo's .capgo_key_v2)
  updraft keys rotate --api|--edge [--overlap 24h]                           new operator or edge key; the old one stays valid for the overlap
  updraft keys rotate --signing [--prepare]                                  new snapshot signing key (prepare, add to edges, rotate)

Operator commands (talk to --origin, default http://127.0.0.1:8090, key from --api-key,
UPDRAFT_API_KEY or ./updraft-data/api-key):
  updraft app create ID [--name NAME]
  updraft app list
  updraft app delete ID --yes                 delete the app, its bundles, channels and statistics
  updraft app set ID --keep N                  keep the N newest bundles (0: all); older ones not in use are deleted
  updraft app set ID [--expose-metadata] [--allow-device-custom-id=false]   device-protocol options (Capgo's)
  updraft bundle upload PATH --app ID --version V [--channel NAME] [--encrypt-key .capgo_key_v2]   PATH: a zip or a folder
  updraft bundle list --app ID
  updraft bundle delete V --app ID             refused while a channel, rollout or A/B arm points at it
  updraft bundle rebuild V --app ID [--force]  queue the bundle's build again (--force: clear manifest, canonical, deltas first)
  updraft gc [--grace 1h]                      delete blobs no bundle or shard references (older than the grace)
  updraft channel set NAME --app ID [--bundle V|builtin] [--default] [option flags]   builtin: back to the store build
  updraft channel list --app ID
  updraft channel rollout NAME --app ID --bundle V --percent P   (or --bps N; --pause, --resume, --promote, --rollback)
  updraft channel ab NAME --app ID --arm NAME=VERSION:PERCENT ... (or --clear)
  updraft channel guard NAME --app ID [--threshold 10] [--min-attempts 50] [--min-failures 5] [--window 10m]
                        [--action pause|rollback|notify] [--cooldown 5m]   (no flags: show; --remove)
                        [--min-prefixes 5] [--max-devices-per-prefix 25] [--count-new-devices]
  updraft stats --app ID [--channel NAME] [--segment S] [--platform P] [--since 24h]
                        adoption, downloads, installs, failures per bundle and segment
  updraft segment add NAME --app ID --channel C [--platform P] [--version-build RANGE] [--custom-id-prefix X] ...
  updraft segment list|remove [NAME] --app ID
  updraft device override DEVICE_ID... --app ID --channel NAME   (or --clear); updraft device list --app ID
  updraft resolve --app ID --device ID --platform P --version-build V [--version-name V] [--custom-id X] ...

Moving between back ends (stop the origin first; docs/deploy.md):
  updraft migrate [--data DIR] [--from-store URL] [--from-blobs URL] [--to-data DIR] [--to-store URL] [--to-blobs URL] [--verify]
                  copies store and blobs (embedded SQLite + files <-> PostgreSQL + S3); resumable; --verify-only compares

Deltas:
  updraft delta build --from OLD --to NEW --encoding dcb|dcz -o OUT   (OLD, NEW: zip or folder)
  updraft delta apply --base OLD --delta IN -o OUT

Load testing:
  updraft bench [--target URL] [--scenario release-storm|steady|FILE.json] [--devices N] [--duration D]
                [--connections C] [--link 40ms/100mbit] [--json]
                loads a throwaway bench.* app it creates and deletes (--origin, --api-key, --bundle ZIP);
                --app ID --i-know-this-is-production loads an existing app instead
  updraft bench compare [same flags]      the scenario against Updraft, then nginx and Caddy serving the same bundle
  updraft bench fetch [--proto h3|h2|h1] [-n N] [-c C] URL
  updraft bench link --listen ADDR --upstream ADDR --profile 40ms/100mbit[/1%]

Run "updraft COMMAND --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "updraft:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	sub := func() (string, []string) {
		if len(rest) == 0 {
			return "", nil
		}
		return rest[0], rest[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stderr)
	case "origin":
		return cmdOrigin(ctx, rest, stderr)
	case "edge":
		return cmdEdge(ctx, rest, stderr)
	case "keys":
		if len(rest) > 0 && rest[0] == "rotate" { // keys.go
			return cmdKeysRotate(ctx, rest[1:], stdout, stderr)
		}
		return cmdKeys(rest, stdout, stderr)
	case "app":
		s, r := sub()
		return cmdApp(ctx, s, r, stdout, stderr)
	case "bundle":
		s, r := sub()
		return cmdBundle(ctx, s, r, stdout, stderr)
	case "channel":
		s, r := sub()
		switch s {
		case "rollout":
			return cmdRollout(ctx, r, stdout, stderr)
		case "ab":
			return cmdAB(ctx, r, stdout, stderr)
		case "guard":
			return cmdGuard(ctx, r, stdout, stderr)
		}
		return cmdChannel(ctx, s, r, stdout, stderr)
	case "segment":
		s, r := sub()
		return cmdSegment(ctx, s, r, stdout, stderr)
	case "device":
		s, r := sub()
		return cmdDevice(ctx, s, r, stdout, stderr)
	case "resolve":
		return cmdResolve(ctx, rest, stdout, stderr)
	case "stats":
		return cmdStats(ctx, rest, stdout, stderr)
	case "bench":
		return cmdBench(ctx, rest, stdout, stderr)
	case "delta":
		s, r := sub()
		return cmdDelta(ctx, s, r, stdout, stderr)
	case "gc": // lifecycle.go
		return cmdGC(ctx, rest, stdout, stderr)
	case "migrate": // migrate.go
		return cmdMigrate(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// parseFlags parses flags that may come before, between or after positional
// arguments ("bundle upload PATH --app ID") and returns the positionals.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func want(n int, pos []string, what string) error {
	if len(pos) != n {
		return fmt.Errorf("want %s, got %q", what, strings.Join(pos, " "))
	}
	return nil
}
