package main

// The command reference: one entry per command and subcommand, from which
// `updraft --help`, `updraft GROUP --help` and `updraft COMMAND --help`
// are printed (the flags come from the command's own flag set, so they
// cannot drift from what it parses). TestHelpEveryCommand walks them all.

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/updraft-cdn/updraft/config"
)

type cmdDoc struct {
	name     string // "bundle upload"
	args     string // what follows the name in the usage line
	summary  string // one line
	section  string
	examples []string
	notes    string // optional paragraph after the flags
}

const (
	secRoles    = "Roles"
	secOperator = "Operator commands (talk to --origin, default " + config.DefaultOriginURL + "; key from --api-key, UPDRAFT_API_KEY or ./updraft-data/api-key; --json prints JSON)"
	secKeys     = "Keys"
	secMigrate  = "Moving between back ends (stop the origin first; docs/deploy.md)"
	secDeltas   = "Deltas"
	secBench    = "Load testing"
)

var sections = []string{secRoles, secKeys, secOperator, secMigrate, secDeltas, secBench}

// groups are the commands that only group subcommands, with a summary.
var groups = map[string]string{
	"app":     "create, list, configure and delete apps",
	"bundle":  "upload, list, delete and rebuild an app's bundles; check their native compatibility",
	"channel": "route devices: channels, rollouts, A/B splits and rollout guards",
	"segment": "attribute rules that send matching devices to a channel",
	"cohort":  "named sets of devices (imported, or computed from behaviour) that segments route with --cohort",
	"device":  "the device inventory (last check-in, recent events, live tail) and overrides",
	"keys":    "show, create, list, revoke and rotate keys",
	"delta":   "build and apply binary deltas between bundles",
	"webhook": "POST audit events (uploads, channel changes, rollout pauses, guard actions) to URLs, signed",
	"config":  "check a configuration file",
}

var docs = []cmdDoc{
	{name: "serve", section: secRoles, args: "[--config FILE] [--data DIR] [--origin-listen ADDR] [--edge-listen ADDR] [flags]",
		summary: "origin and edge in one process: a whole installation on one machine",
		examples: []string{"updraft serve", "updraft serve --edge-listen 0.0.0.0:8080 --public-url http://192.168.1.10:8080",
			"updraft serve --config updraft.toml"},
		notes: "Every flag can be set in a TOML file given with --config (or UPDRAFT_CONFIG), by its long name:\n" +
			"flags > environment > file > defaults. `updraft config check --config FILE serve` shows the result."},
	{name: "origin", section: secRoles, args: "[--config FILE] [--data DIR] [--listen ADDR] [--store URL] [--blobs URL] [flags]",
		summary: "origin only: operator API, bundle builds, snapshots for edges",
		examples: []string{"updraft origin --listen 0.0.0.0:8090",
			"updraft origin --store postgres://updraft:secret@db:5432/updraft --blobs 's3://bundles?endpoint=s3:8333&region=us-east-1'",
			"updraft origin --config /etc/updraft/origin.toml"},
		notes: "Settable in a --config file (or UPDRAFT_CONFIG) by long flag name; flags > environment > file > defaults."},
	{name: "edge", section: secRoles, args: "--upstream URL --origin-pubkey KEY --edge-key-file FILE [--config FILE] [--data DIR] [--listen ADDR] [flags]",
		summary: "edge following an origin or a parent edge; answers devices",
		examples: []string{`updraft edge --upstream http://origin:8090 --origin-pubkey "$(updraft keys show --pubkey)" --edge-key-file updraft-data/edge-key --listen 0.0.0.0:8080`,
			"updraft edge --config /etc/updraft/edge.toml"},
		notes: "`updraft keys show` on the origin prints the public key and the edge key file. Settable in a --config\n" +
			"file (or UPDRAFT_CONFIG) by long flag name; flags > environment > file > defaults."},
	{name: "config check", section: secRoles, args: "--config FILE [serve|origin|edge]",
		summary:  "validate a configuration file and print the effective configuration (secrets redacted)",
		examples: []string{"updraft config check --config updraft.toml", "updraft config check --config edge.toml edge"},
		notes: "Exit status 0 when the role would start with this configuration, 2 with the problem otherwise.\n" +
			"The role defaults to the file's only [serve], [origin] or [edge] table, else serve."},

	{name: "keys show", section: secKeys, args: "[--data DIR] [--pubkey]",
		summary:  "the origin's snapshot public key and its key files (for starting edges)",
		examples: []string{"updraft keys show", "updraft keys show --pubkey"}},
	{name: "keys create-bundle-key", section: secKeys, args: "[--dir DIR] [--force]",
		summary:  "RSA-2048 pair for end-to-end encrypted bundles (Capgo's .capgo_key_v2)",
		examples: []string{"updraft keys create-bundle-key --dir ."}},
	{name: "keys create-expo-signing", section: secKeys, args: "[--dir DIR] [--cn NAME] [--years 10]",
		summary:  "RSA-2048 key and self-signed certificate for Expo code signing (the app embeds the certificate, edges sign with the key)",
		examples: []string{"updraft keys create-expo-signing --dir expo-signing --cn \"Example Inc.\""},
		notes: "Writes private-key.pem, public-key.pem and certificate.pem, as `npx expo-updates codesigning:generate` does, and\n" +
			"prints the app.json lines (updates.codeSigningCertificate, codeSigningMetadata) and the edge flag that signs with the key."},
	{name: "keys create", section: secKeys, args: "--name NAME --scope admin|deploy|upload|read [--app ID] [--expires 90d]",
		summary: "an API key with a scope, for one app or every app; prints its secret once",
		examples: []string{"updraft keys create --name ci --scope upload --app com.example.app --expires 90d",
			"updraft keys create --name release --scope deploy", "updraft keys create --name dashboard --scope read --json"},
		notes: "Scopes: admin (everything), deploy (upload, delete and rebuild bundles, change channels, rollouts, A/B splits,\n" +
			"segments, overrides and guards, and read), upload (upload bundles and follow their builds), read (stats, lists,\n" +
			"resolve, guard status). A key for one app reaches only that app; creating apps, gc and keys need an admin key for\n" +
			"every app. The secret is printed alone on stdout (KEY=$(updraft keys create ...)); only its SHA-256 is stored."},
	{name: "keys list", section: secKeys, args: "[--json]",
		summary:  "the API keys: name, scope, app, created, expires, revoked (never a secret)",
		examples: []string{"updraft keys list", "updraft keys list --json"}},
	{name: "keys revoke", section: secKeys, args: "NAME",
		summary:  "revoke a key at once, on every origin (the admin and edge keys of the data folder are rotated instead)",
		examples: []string{"updraft keys revoke ci"}},
	{name: "keys rotate", section: secKeys, args: "--api|--edge [--overlap 24h] | --signing [--prepare]",
		summary: "new admin key (DATA/api-key), edge or snapshot signing key; the old one stays valid for the overlap",
		examples: []string{"updraft keys rotate --api", "updraft keys rotate --edge --overlap 1h",
			"updraft keys rotate --signing --prepare"}},

	{name: "app create", section: secOperator, args: "ID [--name NAME]", summary: "create an app",
		examples: []string{`updraft app create com.example.app --name "Example"`}},
	{name: "app list", section: secOperator, args: "[--json]", summary: "list apps",
		examples: []string{"updraft app list", "updraft app list --json"}},
	{name: "app set", section: secOperator, args: "ID [--keep N] [--expose-metadata] [--allow-device-custom-id=false]",
		summary:  "bundle retention and device-protocol options (Capgo's)",
		examples: []string{"updraft app set com.example.app --keep 10", "updraft app set com.example.app --expose-metadata"}},
	{name: "app delete", section: secOperator, args: "ID --yes", summary: "delete an app with its bundles, channels and statistics",
		examples: []string{"updraft app delete com.example.old --yes"}},

	{name: "bundle upload", section: secOperator, args: "PATH --app ID --version V [--channel NAME [--min-native-build B | --force]] [--package-json FILE | --no-native-check] [--encrypt-key FILE | --expo [--runtime-version RV]] [--wait]",
		summary: "upload a bundle: a zip, or a folder the CLI zips",
		examples: []string{"updraft bundle upload dist/ --app com.example.app --version 1.0.1",
			"updraft bundle upload app.zip --app com.example.app --version 1.0.2 --channel production",
			"updraft bundle upload dist/ --app com.example.app --version 1.0.3 --wait",
			"updraft bundle upload dist/ --app com.example.rn --version 1.0.4 --expo --runtime-version 1.0.0 --wait",
			"updraft bundle upload dist/ --app com.example.app --version 1.1.0 --channel production --min-native-build 2.0.0"},
		notes: "On a terminal the upload shows its progress on stderr (not with --json, nor when stderr is not a terminal).\n" +
			"--expo: PATH is the folder `npx expo export` wrote (metadata.json, optional expoConfig.json, whose app config\n" +
			"becomes the manifest's extra.expoClient); the runtime version is --runtime-version, else expoConfig.json's\n" +
			"runtimeVersion when it is a string (a policy is refused: pass --runtime-version).\n" +
			"Native packages: the CLI records the bundle's native Capacitor packages (name and installed version) from the\n" +
			"app's package.json and node_modules; with --channel, a bundle that needs a native package (or version) the\n" +
			"channel's bundle lacks is refused (incompatible_native) unless --min-native-build or --force."},
	{name: "bundle list", section: secOperator, args: "--app ID [--json]", summary: "list an app's bundles with their deltas and build state",
		examples: []string{"updraft bundle list --app com.example.app", "updraft bundle list --app com.example.app --json"}},
	{name: "bundle delete", section: secOperator, args: "V --app ID", summary: "delete a bundle (refused while a channel, rollout or A/B arm points at it)",
		examples: []string{"updraft bundle delete 1.0.0 --app com.example.app"}},
	{name: "bundle rebuild", section: secOperator, args: "V --app ID [--force] [--wait]", summary: "queue a bundle's build (manifest, canonical archive, deltas) again",
		examples: []string{"updraft bundle rebuild 1.0.1 --app com.example.app --force --wait"}},
	{name: "bundle compatibility", section: secOperator, args: "V --app ID --channel C [--json]",
		summary:  "compare a bundle's native packages with the channel's bundle (exit 1 when incompatible)",
		examples: []string{"updraft bundle compatibility 1.1.0 --app com.example.app --channel production"}},

	{name: "channel set", section: secOperator, args: "NAME --app ID [--bundle V|builtin [--min-native-build B | --force]] [--default] [--window W]... [--blackout D]... [--no-windows] [option flags]",
		summary: "create or change a channel (builtin: back to the store build)",
		examples: []string{"updraft channel set production --app com.example.app --bundle 1.0.1 --default",
			"updraft channel set beta --app com.example.app --bundle 1.0.2 --allow-device-self-set --ios=false",
			"updraft channel set production --app com.example.app --bundle 1.1.0 --min-native-build 2.0.0",
			`updraft channel set enterprise --app com.example.app --window "Sat 01:00-05:00 Europe/Rome" --blackout 2026-12-24`}},
	{name: "channel list", section: secOperator, args: "--app ID [--json]", summary: "list channels with their bundle, rollout or A/B split",
		examples: []string{"updraft channel list --app com.example.app", "updraft channel list --app com.example.app --json"}},
	{name: "channel rollout", section: secOperator, args: "NAME --app ID --bundle V --percent P | --pause|--resume|--promote|--rollback",
		summary: "roll a bundle out to a share of the channel's devices",
		examples: []string{"updraft channel rollout production --app com.example.app --bundle 1.0.2 --percent 10",
			"updraft channel rollout production --app com.example.app --percent 50",
			"updraft channel rollout production --app com.example.app --promote"}},
	{name: "channel ab", section: secOperator, args: "NAME --app ID --arm NAME=VERSION:PERCENT... | --clear",
		summary:  "A/B split of a channel's devices between bundles",
		examples: []string{"updraft channel ab production --app com.example.app --arm a=1.0.1:50 --arm b=1.0.2:50"}},
	{name: "channel guard", section: secOperator, args: "NAME --app ID [--threshold 10] [--action pause|rollback|notify] [flags] | --remove",
		summary: "pause or roll back a rollout whose installs fail too often (no flags: show it)",
		examples: []string{"updraft channel guard production --app com.example.app --threshold 10 --min-attempts 50",
			"updraft channel guard production --app com.example.app"}},
	{name: "channel history", section: secOperator, args: "NAME --app ID [--limit 50] [--before ID] [--since 7d] [--json]",
		summary: "the channel's deployment history: bundle, rollouts, A/B splits, guard actions, by whom and when (newest first)",
		examples: []string{"updraft channel history production --app com.example.app",
			"updraft channel history production --app com.example.app --since 7d --json"}},
	{name: "channel preview", section: secOperator, args: "--app ID --bundle V [--ttl 24h] [--edge-url URL] [--app-scheme S] [--qr-png FILE] | --list | --delete NAME",
		summary: "short-lived, unlisted preview channel: prints a link and QR code that move a tester's device to it",
		examples: []string{"updraft channel preview --app com.example.app --bundle 1.0.3-pr.42 --edge-url https://edge.example.com --qr-png preview.png",
			"updraft channel preview --app com.example.app --list --edge-url https://edge.example.com",
			"updraft channel preview --app com.example.app --delete pv-7kq2m9xa"},
		notes: "The link opens a page on the edge with a deep link SCHEME://updraft-preview?token=TOKEN (SCHEME: --app-scheme,\n" +
			"default the app id); the app passes the token to CapacitorUpdater.setChannel (docs/cli.md has the snippet).\n" +
			"The preview channel and its token stop working after --ttl (at most 30d); the origin then deletes it."},

	{name: "segment add", section: secOperator, args: "NAME --app ID --channel C [--platform P] [--version-build RANGE] [--custom-id-prefix X] [--cohort NAME] [flags]",
		summary: "add an attribute rule sending matching devices to a channel",
		examples: []string{"updraft segment add testers --app com.example.app --channel beta --custom-id-prefix qa-",
			"updraft segment add power-users --app com.example.app --channel beta --cohort power",
			`updraft segment add enterprise --app com.example.app --channel production --custom-id-prefix corp- --window "Sat 01:00-05:00 Europe/Rome"`}},
	{name: "segment list", section: secOperator, args: "--app ID [--json]", summary: "list an app's rules in evaluation order",
		examples: []string{"updraft segment list --app com.example.app --json"}},
	{name: "segment remove", section: secOperator, args: "NAME --app ID", summary: "remove a rule",
		examples: []string{"updraft segment remove testers --app com.example.app"}},

	{name: "cohort add", section: secOperator, args: "NAME --app ID --rule RULE [--json]",
		summary: "a behaviour cohort the origin computes now and every hour: new:Nd, active:K/Nd, power:P%[/EVENT] or failing:Nd",
		examples: []string{`updraft cohort add power --app com.example.app --rule "power:10%"`,
			`updraft cohort add regulars --app com.example.app --rule "active:5/7d"`,
			`updraft cohort add foreground --app com.example.app --rule "power:5%/app_moved_to_foreground"`},
		notes: "new:Nd first seen within N days; active:K/Nd checked in on at least K distinct UTC days of the last N;\n" +
			"power:P% the top P% of active devices (heard of within 30 days) by check-ins within 30 days,\n" +
			"power:P%/EVENT by reports of that /stats action instead (devices with none are never members);\n" +
			"failing:Nd an install failure (*_fail) within N days. N is 1 to 90."},
	{name: "cohort import", section: secOperator, args: "NAME --app ID FILE|- [--json]",
		summary: "make a cohort exactly the set of device ids or custom ids in a CSV or JSON-lines file (streamed, diffed: re-importing changes nothing)",
		examples: []string{"updraft cohort import power --app com.example.app power-users.csv",
			"updraft cohort import vip --app com.example.app vip.jsonl --json"},
		notes: "CSV: one id per line (a UUID is a device id, anything else a custom id), or a header row naming\n" +
			"device_id and/or custom_id columns. JSON lines: {\"device_id\": …} or {\"custom_id\": …} per line.\n" +
			"At most 64 cohorts and 5,000,000 members (all cohorts together) per app."},
	{name: "cohort list", section: secOperator, args: "--app ID [--json]", summary: "list an app's cohorts: members and the last import's churn",
		examples: []string{"updraft cohort list --app com.example.app"}},
	{name: "cohort remove", section: secOperator, args: "NAME --app ID", summary: "remove a cohort (no segment may route it)",
		examples: []string{"updraft cohort remove power --app com.example.app"}},

	{name: "device override", section: secOperator, args: "DEVICE_ID... --app ID --channel NAME | --clear",
		summary:  "pin devices to a channel, or unpin them",
		examples: []string{"updraft device override 00009a6b-eefe-490a-9c60-8e965132ae51 --app com.example.app --channel beta"}},
	{name: "device overrides", section: secOperator, args: "--app ID [--after DEVICE_ID] [--limit N] [--json]", summary: "list pinned devices",
		examples: []string{"updraft device overrides --app com.example.app", "updraft device overrides --app com.example.app --json"},
		notes:    "Before the device inventory this was `device list`; `device list --overrides` (or `device list --after ID`) still lists them."},
	{name: "device show", section: secOperator, args: "DEVICE_ID --app ID [--json]",
		summary:  "a device's last check-in (edge, platform, versions, channel and why) and recent events",
		examples: []string{"updraft device show 00009a6b-eefe-490a-9c60-8e965132ae51 --app com.example.app"}},
	{name: "device list", section: secOperator, args: "--app ID [--channel C] [--version V] [--platform P] [--limit N] [--cursor X] [--json]",
		summary: "the app's devices by last check-in, paged by cursor",
		examples: []string{"updraft device list --app com.example.app --channel production --version 1.0.2",
			"updraft device list --app com.example.app --platform ios --limit 500 --json"},
		notes: "Devices are listed in device id order; a page that is not the last prints the --cursor of the next (in --json: next_cursor)."},
	{name: "device tail", section: secOperator, args: "DEVICE_ID --app ID [--seconds N] [--json]",
		summary:  "follow a device's check-ins and events as edges forward them",
		examples: []string{"updraft device tail 00009a6b-eefe-490a-9c60-8e965132ae51 --app com.example.app"}},

	{name: "webhook add", section: secOperator, args: "--url URL --events E1,E2 [--app ID] [--format json|slack] [--secret S]",
		summary: "POST these audit events to a URL, signed (HMAC-SHA256); prints the secret once",
		examples: []string{"updraft webhook add --url https://ci.example.com/updraft --events bundle.uploaded,channel.changed,rollout.paused,guard.acted",
			"updraft webhook add --url https://hooks.slack.com/services/T000/B000/XXXX --events 'rollout.*,guard.acted' --app com.example.app --format slack"},
		notes: "Events are audit actions (docs/cli.md, \"Webhooks\"); rollout.* takes a group, * every action. Failed deliveries are\n" +
			"retried with backoff (8 attempts over about 17 hours); receivers verify Updraft-Signature with the secret."},
	{name: "webhook list", section: secOperator, args: "[--json]", summary: "list webhooks (secrets are never shown again)",
		examples: []string{"updraft webhook list"}},
	{name: "webhook remove", section: secOperator, args: "ID", summary: "remove a webhook and its delivery log",
		examples: []string{"updraft webhook remove 3"}},
	{name: "webhook deliveries", section: secOperator, args: "ID [--limit 20] [--json]", summary: "a webhook's latest deliveries: state, attempts, last status and error",
		examples: []string{"updraft webhook deliveries 3"}},
	{name: "webhook test", section: secOperator, args: "ID", summary: "send a webhook.test ping now and say how the receiver answered",
		examples: []string{"updraft webhook test 3"}},

	{name: "resolve", section: secOperator, args: "--app ID --device ID --platform P --version-build V [--version-name V] [--custom-id X] [flags]",
		summary:  "what an edge answers a device now, and why",
		examples: []string{"updraft resolve --app com.example.app --device 00009a6b-eefe-490a-9c60-8e965132ae51 --platform ios --version-build 1.0.0"}},
	{name: "stats", section: secOperator, args: "--app ID [--channel NAME] [--segment S] [--platform P] [--since 24h] [--adoption [--version V]] [--json]",
		summary: "adoption, downloads, installs and failures per bundle and segment, cohort members and churn; --adoption: adoption speed and success per release",
		examples: []string{"updraft stats --app com.example.app", "updraft stats --app com.example.app --channel production --since 1h --json",
			"updraft stats --app com.example.app --adoption --version 1.0.1"}},
	{name: "gc", section: secOperator, args: "[--grace 1h]", summary: "delete blobs no bundle references now (older than the grace)",
		examples: []string{"updraft gc", "updraft gc --grace 24h"}},
	{name: "audit", section: secOperator, args: "[--app ID] [--since 24h|RFC3339] [--action a,b] [--target T] [--limit N] [--json]",
		summary: "the audit trail: who changed what, when, from which address, before → after (oldest first)",
		examples: []string{"updraft audit --app com.example.app --since 24h",
			"updraft audit --action rollout.paused,rollout.rolled_back,guard.acted --since 7d --json"},
		notes: "Every change made through the operator API is recorded with the key's name and the client's address, in the\n" +
			"change's own transaction; the origin's own changes name it: guard (rollout guard) and retention (app set --keep)."},

	{name: "migrate", section: secMigrate, args: "[--data DIR] [--from-store URL] [--from-blobs URL] [--to-data DIR] [--to-store URL] [--to-blobs URL] [--verify]",
		summary: "copy store and blobs between SQLite + files and PostgreSQL + S3 (resumable)",
		examples: []string{"updraft migrate --data updraft-data --to-store postgres://updraft:secret@db:5432/updraft --to-blobs 's3://bundles?endpoint=s3:8333' --verify",
			"updraft migrate --data updraft-data --to-store postgres://updraft:secret@db:5432/updraft --to-blobs 's3://bundles?endpoint=s3:8333' --verify-only"}},

	{name: "delta build", section: secDeltas, args: "--from OLD --to NEW -o OUT [--encoding dcb|dcz]",
		summary:  "build and verify a delta between two bundles (zips or folders)",
		examples: []string{"updraft delta build --from old.zip --to new.zip -o update.dcb"}},
	{name: "delta apply", section: secDeltas, args: "--base OLD --delta IN -o OUT", summary: "apply a delta to a bundle",
		examples: []string{"updraft delta apply --base old.zip --delta update.dcb -o new.tar"}},
	{name: "delta canonical", section: secDeltas, args: "--from BUNDLE -o OUT", summary: "a bundle's canonical archive (what deltas are built between)",
		examples: []string{"updraft delta canonical --from app.zip -o app.tar"}},

	{name: "bench", section: secBench, args: "[--target URL] [--scenario release-storm|steady|stats|cohort-fleet|FILE.json] [--power 5%] [--devices N] [--duration D] [--connections C] [--link 40ms/100mbit] [--proto h1|h3] [--client updraft|capgo|expo] [--conn warm|cold] [--json] [--out FILE] [--html FILE]",
		summary: "load an edge like a fleet of devices, on a throwaway bench.* app it creates and deletes",
		examples: []string{"updraft bench --scenario release-storm --devices 10000 --duration 30s",
			"updraft bench --scenario stats --duration 10s", "updraft bench --proto h3 --insecure --target https://127.0.0.1:8443 --html report.html",
			"updraft bench --client capgo --conn cold --link 40ms/100mbit --app com.example.app --i-know-this-is-production --version-name 1.0.1 --devices 20 --duration 4s",
			"updraft bench --client expo --conn cold --link 40ms/100mbit --devices 40 --duration 8s",
			"updraft bench --client expo --version-name offered --scenario steady --duration 10s",
			"updraft bench --scenario cohort-fleet --devices 100000 --power 5%"},
		notes: "Scenarios: release-storm (every device checks once and downloads), steady (closed-loop update checks),\n" +
			"stats (device events), cohort-fleet (behaviour cohorts checked exactly, then a segment on the power cohort;\n" +
			"exits 1 on a mismatch: docs/cli.md, \"Cohorts on a simulated fleet\"), or a scenario file.\n" +
			"--app ID --i-know-this-is-production loads an existing app instead.\n\n" +
			"--client capgo behaves like the unmodified @capgo/capacitor-updater 8.x: update check with the plugin's headers\n" +
			"(Accept-Encoding gzip on Android, gzip, deflate, br on iOS), then, when the answer has a manifest, the files the\n" +
			"device does not hold (--manifest-concurrency at once, .br decoded, each SHA-256-checked), else the zip; never\n" +
			"delta_url. Devices on --version-name hold that bundle's files, learnt once from the target (the base archive its\n" +
			"answer names). Time to update is reported per path (manifest, zip) with the connections opened; --conn cold\n" +
			"counts TCP+TLS (or QUIC) handshakes in every update; with --link a device's connections share its bandwidth\n" +
			"(docs/cli.md, \"Load testing as stock devices\").\n\n" +
			"--client expo behaves like the stock expo-updates Android client at launch: GET /expo/APP/manifest with its\n" +
			"headers (eas-client-id, expo-runtime-version from --version-build, expo-channel-name production,\n" +
			"expo-current-update-id), the multipart answer read part by part, then every asset whose key the device does\n" +
			"not hold, --expo-concurrency at once, each checked against the manifest's base64url SHA-256. --version-name\n" +
			"builtin: a fresh install on its embedded update (downloads everything); offered: devices already on the\n" +
			"update the target offers (noUpdateAvailable). The throwaway app gets a generated Expo export (or --bundle\n" +
			"DIR, an npx expo export folder) uploaded with --expo; time to update is reported on path expo."},
	{name: "bench compare", section: secBench, args: "[bench flags]", summary: "the scenario against Updraft, then nginx and Caddy serving the same bundle",
		examples: []string{"updraft bench compare --devices 1000 --duration 10s"}},
	{name: "bench fetch", section: secBench, args: "[--proto h3|h2|h1] [-n N] [-c C] [--insecure] URL", summary: "repeat one GET and report rate and latency",
		examples: []string{"updraft bench fetch --proto h3 --insecure -n 20 https://localhost:8443/healthz"}},
	{name: "bench link", section: secBench, args: "--listen ADDR --upstream ADDR --profile 40ms/100mbit[/1%] [--udp]",
		summary:  "relay through an emulated network path (RTT, bandwidth, loss)",
		examples: []string{"updraft bench link --listen 127.0.0.1:9080 --upstream 127.0.0.1:8080 --profile 150ms/10mbit/1%"}},
}

func docOf(name string) *cmdDoc {
	for i := range docs {
		if docs[i].name == name {
			return &docs[i]
		}
	}
	return nil
}

// subcommands lists a group's subcommands, in reference order.
func subcommands(group string) []string {
	var subs []string
	for _, d := range docs {
		if g, s, ok := strings.Cut(d.name, " "); ok && g == group {
			subs = append(subs, s)
		}
	}
	return subs
}

// commandNames are the top-level command words.
func commandNames() []string {
	seen := map[string]bool{"help": true}
	names := []string{"help"}
	for _, d := range docs {
		g, _, _ := strings.Cut(d.name, " ")
		if !seen[g] {
			seen[g] = true
			names = append(names, g)
		}
	}
	return names
}

// printUsage is `updraft --help`: every command, one line each.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "updraft: live-update edge network for Capacitor apps\n\nUsage: updraft COMMAND [SUBCOMMAND] [ARGUMENTS] [FLAGS]\n")
	for _, sec := range sections {
		fmt.Fprintf(w, "\n%s:\n", sec)
		for _, d := range docs {
			if d.section == sec {
				fmt.Fprintf(w, "  %-50s  %s\n", "updraft "+d.name+" "+d.args, d.summary)
			}
		}
	}
	fmt.Fprint(w, `
Exit status: 0 success; 1 an operation failed (the server refused, network, files);
2 usage error (unknown command or flag, missing or bad value).
Run "updraft COMMAND --help" for a command's flags and examples; docs/cli.md describes
the configuration file, --json output and exit codes.
`)
}

// printGroupHelp is `updraft GROUP --help`: the group's subcommands.
func printGroupHelp(w io.Writer, group string) {
	fmt.Fprintf(w, "updraft %s: %s\n\nSubcommands:\n", group, groups[group])
	var examples []string
	for _, sub := range subcommands(group) {
		d := docOf(group + " " + sub)
		fmt.Fprintf(w, "  %-50s  %s\n", "updraft "+d.name+" "+d.args, d.summary)
		if len(d.examples) > 0 {
			examples = append(examples, d.examples[0])
		}
	}
	fmt.Fprintln(w, "\nExamples:")
	for _, e := range examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintf(w, "\nRun \"updraft %s SUBCOMMAND --help\" for its flags.\n", group)
}

// printCommandHelp is `updraft COMMAND --help`: usage line, description,
// flags (from the flag set the command parses with) and examples.
func printCommandHelp(w io.Writer, fs *flag.FlagSet) {
	d := docOf(fs.Name())
	if d == nil {
		d = &cmdDoc{name: fs.Name(), args: "[flags]"}
	}
	fmt.Fprintf(w, "updraft %s: %s\n\nUsage:\n  updraft %s %s\n", d.name, d.summary, d.name, d.args)
	if d.name == "bench" {
		fmt.Fprintf(w, "  updraft bench compare|fetch|link ... (updraft bench SUBCOMMAND --help)\n")
	}
	fmt.Fprintln(w, "\nFlags:")
	var fl []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { fl = append(fl, f) })
	sort.Slice(fl, func(i, j int) bool { return fl[i].Name < fl[j].Name })
	for _, f := range fl {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if t := flagType(f); t != "" {
			line += " " + t
		}
		usage := f.Usage
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "[]" && def != "0s" {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	}
	if d.notes != "" {
		fmt.Fprintf(w, "\n%s\n", d.notes)
	}
	fmt.Fprintln(w, "\nExample:")
	for _, e := range d.examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
}
