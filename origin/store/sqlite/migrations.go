package sqlite

// Meta is the metadata database (DATA/meta.db): keys, apps, bundles,
// channels, segments, overrides, deltas, guards, jobs.
var Meta = Schema{foreignKeys: true, migrations: []string{
	`CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), rev INTEGER NOT NULL);
	 INSERT INTO revision (id, rev) VALUES (1, 0);
	 CREATE TABLE api_keys (
		id INTEGER PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		label TEXT NOT NULL,
		created_at INTEGER NOT NULL);
	 CREATE TABLE apps (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		created_at INTEGER NOT NULL);
	 CREATE TABLE bundles (
		app_id TEXT NOT NULL REFERENCES apps(id),
		version TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		min_update_version TEXT NOT NULL DEFAULT '',
		comment TEXT NOT NULL DEFAULT '',
		link TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, version));
	 CREATE TABLE channels (
		app_id TEXT NOT NULL REFERENCES apps(id),
		name TEXT NOT NULL,
		bundle_version TEXT,
		public INTEGER NOT NULL,
		ios INTEGER NOT NULL,
		android INTEGER NOT NULL,
		electron INTEGER NOT NULL,
		allow_device_self_set INTEGER NOT NULL,
		allow_emulator INTEGER NOT NULL,
		allow_dev INTEGER NOT NULL,
		allow_prod INTEGER NOT NULL,
		allow_device INTEGER NOT NULL,
		disable_auto_update TEXT NOT NULL,
		disable_auto_update_under_native INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, name),
		FOREIGN KEY (app_id, bundle_version) REFERENCES bundles(app_id, version));`,
	`ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'operator';`,
	`ALTER TABLE channels ADD COLUMN rollout TEXT;
	 ALTER TABLE channels ADD COLUMN ab TEXT;
	 CREATE TABLE segments (
		app_id TEXT NOT NULL REFERENCES apps(id),
		name TEXT NOT NULL,
		position INTEGER NOT NULL,
		rule TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, name));
	 CREATE TABLE device_overrides (
		app_id TEXT NOT NULL,
		device_id BLOB NOT NULL,
		channel TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, device_id),
		FOREIGN KEY (app_id, channel) REFERENCES channels(app_id, name)) WITHOUT ROWID;
	 CREATE INDEX device_overrides_channel ON device_overrides (app_id, channel);`,
	`ALTER TABLE bundles ADD COLUMN canonical_sha256 TEXT NOT NULL DEFAULT '';
	 ALTER TABLE bundles ADD COLUMN canonical_size INTEGER NOT NULL DEFAULT 0;
	 CREATE TABLE deltas (
		app_id TEXT NOT NULL,
		from_version TEXT NOT NULL,
		to_version TEXT NOT NULL,
		encoding TEXT NOT NULL,
		base_sha256 TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, from_version, to_version, encoding),
		FOREIGN KEY (app_id, to_version) REFERENCES bundles(app_id, version));`,
	`CREATE TABLE manifest_files (
		app_id TEXT NOT NULL,
		version TEXT NOT NULL,
		file_name TEXT NOT NULL,
		file_hash TEXT NOT NULL,
		blob_sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		PRIMARY KEY (app_id, version, file_name),
		FOREIGN KEY (app_id, version) REFERENCES bundles(app_id, version));`,
	`CREATE TABLE channel_guards (
		app_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		config TEXT NOT NULL,
		last_action_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, channel));
	 CREATE TABLE guard_actions (
		id INTEGER PRIMARY KEY,
		app_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		at INTEGER NOT NULL,
		action TEXT NOT NULL,
		bundle TEXT NOT NULL,
		attempts INTEGER NOT NULL,
		failures INTEGER NOT NULL,
		failure_rate REAL NOT NULL,
		lower_bound REAL NOT NULL,
		error TEXT NOT NULL);
	 CREATE INDEX guard_actions_channel ON guard_actions (app_id, channel, id);`,
	// Capgo parity: end-to-end encrypted bundles (the origin keeps what the
	// CLI encrypted, never a key that decrypts it), channels that revert
	// devices to the store build, overrides set by old plugins' setChannel,
	// the app's device-protocol options, and bundle retention.
	`ALTER TABLE bundles ADD COLUMN session_key TEXT NOT NULL DEFAULT '';
	 ALTER TABLE bundles ADD COLUMN checksum TEXT NOT NULL DEFAULT '';
	 ALTER TABLE bundles ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
	 ALTER TABLE channels ADD COLUMN builtin INTEGER NOT NULL DEFAULT 0;
	 ALTER TABLE device_overrides ADD COLUMN source TEXT NOT NULL DEFAULT 'operator';
	 ALTER TABLE apps ADD COLUMN expose_metadata INTEGER NOT NULL DEFAULT 0;
	 ALTER TABLE apps ADD COLUMN allow_device_custom_id INTEGER NOT NULL DEFAULT 1;
	 ALTER TABLE apps ADD COLUMN keep_bundles INTEGER NOT NULL DEFAULT 0;`,
	// Durable background work (manifest, canonical archive and delta builds
	// survive restarts and are retried; nothing depends on an in-memory queue
	// having room), and API keys that expire (rotation with an overlap).
	`CREATE TABLE jobs (
		id INTEGER PRIMARY KEY,
		kind TEXT NOT NULL,
		app_id TEXT NOT NULL,
		version TEXT NOT NULL,
		state TEXT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		run_after INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		UNIQUE (kind, app_id, version));
	 CREATE INDEX jobs_runnable ON jobs (state, run_after);
	 ALTER TABLE api_keys ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;`,
	// Secrets shared by every origin of one store (on SQLite, one).
	`CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, created_at INTEGER NOT NULL);`,
	// When the revision last moved (Unix ms, strictly increasing): the
	// snapshot's issued time, the same at every origin that publishes it.
	`ALTER TABLE revision ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0;`,
	// The CPU time the builder took to decode each delta (ns; 0: built
	// before it was measured): edges choose dcz or dcb per pair by size
	// and decode cost (issue 17).
	`ALTER TABLE deltas ADD COLUMN decode_ns INTEGER NOT NULL DEFAULT 0;`,
	// An Expo update's platforms, runtime versions, launch asset, assets
	// and extra (snapshot.ExpoUpdate as JSON); NULL for every other bundle
	// (issue 18).
	`ALTER TABLE bundles ADD COLUMN expo TEXT;`,
	// The audit trail (issue 20): every operator write and every action the
	// origin takes on its own (guard, retention), appended in the
	// transaction of the change it records; webhooks are delivered from it.
	`CREATE TABLE audit_log (
		id INTEGER PRIMARY KEY,
		at INTEGER NOT NULL,
		app_id TEXT NOT NULL,
		actor TEXT NOT NULL,
		addr TEXT NOT NULL,
		action TEXT NOT NULL,
		target TEXT NOT NULL,
		before TEXT NOT NULL,
		after TEXT NOT NULL);
	 CREATE INDEX audit_log_app ON audit_log (app_id, id);`,
	// Preview channels (issue 20, `updraft channel preview`): the Unix
	// time a preview channel expires; 0 for every other channel.
	`ALTER TABLE channels ADD COLUMN preview_expires INTEGER NOT NULL DEFAULT 0;`,
	// Keys with scopes (issue 20): the all-powerful "operator" key (and the
	// keys its rotations replaced) becomes the admin key named "admin", the
	// edge key is named "edge"; a key may be limited to one app and
	// revoked at once by name.
	`UPDATE api_keys SET label = CASE WHEN scope = 'edge' THEN 'edge' ELSE 'admin' END,
		scope = CASE WHEN scope = 'operator' THEN 'admin' ELSE scope END;
	 ALTER TABLE api_keys ADD COLUMN app_id TEXT NOT NULL DEFAULT '';
	 ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;`,
	// Webhooks (issue 20), delivered from the audit trail through an
	// outbox: each webhook's audit_cursor is the last audit record it
	// considered; one transaction turns the records after it into
	// webhook_deliveries rows and advances it; deliveries are claimed with
	// a lease (lease_until) and retried at next_attempt. A removed
	// webhook's id is never given again (AUTOINCREMENT).
	`CREATE TABLE webhooks (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		app_id TEXT NOT NULL,
		url TEXT NOT NULL,
		events TEXT NOT NULL,
		secret TEXT NOT NULL,
		format TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		created_by TEXT NOT NULL,
		audit_cursor INTEGER NOT NULL,
		disabled INTEGER NOT NULL);
	 CREATE TABLE webhook_deliveries (
		id INTEGER PRIMARY KEY,
		webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
		audit_id INTEGER NOT NULL,
		uid TEXT NOT NULL,
		event TEXT NOT NULL,
		body TEXT NOT NULL,
		state TEXT NOT NULL,
		attempts INTEGER NOT NULL,
		next_attempt INTEGER NOT NULL,
		lease_until INTEGER NOT NULL,
		last_status INTEGER NOT NULL,
		last_error TEXT NOT NULL,
		duration_ms INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		UNIQUE (webhook_id, audit_id));
	 CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt);`,
	// Native compatibility (issue 20): a bundle's native packages as the
	// CLI recorded them at upload (JSON [{name, version}]; NULL: not
	// recorded), and a channel's native-build gate (snapshot.NativeGate as
	// JSON; NULL: every device gets the channel's bundle).
	`ALTER TABLE bundles ADD COLUMN native_packages TEXT;
	 ALTER TABLE channels ADD COLUMN native_gate TEXT;`,
	// Maintenance windows (issue 19): a channel's weekly windows and
	// blackout dates (snapshot.Windows as JSON; NULL: updates at any time).
	`ALTER TABLE channels ADD COLUMN windows TEXT;`,
	// Cohorts (issue 19): named sets of devices of an app, imported or
	// computed by the origin (rule: "" for imported), each with its bit in
	// the snapshot's shard entries; members are 16-byte keys (a device id,
	// or snapshot.CohortKeyOfCustomID of a custom id).
	`CREATE TABLE cohorts (
		app_id TEXT NOT NULL REFERENCES apps(id),
		name TEXT NOT NULL,
		bit INTEGER NOT NULL,
		rule TEXT NOT NULL,
		members INTEGER NOT NULL,
		added INTEGER NOT NULL,
		removed INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, name),
		UNIQUE (app_id, bit));
	 CREATE TABLE cohort_members (
		app_id TEXT NOT NULL,
		cohort TEXT NOT NULL,
		member BLOB NOT NULL,
		PRIMARY KEY (app_id, cohort, member),
		FOREIGN KEY (app_id, cohort) REFERENCES cohorts(app_id, name));
	 CREATE INDEX cohort_members_member ON cohort_members (app_id, member);`,
	// The audit records of one kind in a time range (cohort churn in stats).
	`CREATE INDEX audit_log_action ON audit_log (app_id, action, at);`,
}}

// Events is the event database (DATA/events.db): ingested segments and the
// aggregates folded from them, kept apart so that ingest traffic never
// contends with the operator's metadata writes.
var Events = Schema{migrations: []string{
	`CREATE TABLE event_segments (
		edge_id TEXT NOT NULL,
		seq INTEGER NOT NULL,
		events INTEGER NOT NULL,
		received_at INTEGER NOT NULL,
		data BLOB,
		sha256 TEXT NOT NULL,
		PRIMARY KEY (edge_id, seq, sha256)) WITHOUT ROWID;
	 CREATE INDEX event_segments_received ON event_segments (received_at);
	 CREATE TABLE event_counts (
		app_id TEXT NOT NULL,
		minute INTEGER NOT NULL,
		channel TEXT NOT NULL,
		segment TEXT NOT NULL,
		arm TEXT NOT NULL,
		platform TEXT NOT NULL,
		version_name TEXT NOT NULL,
		action TEXT NOT NULL,
		n INTEGER NOT NULL,
		PRIMARY KEY (app_id, minute, channel, segment, arm, platform, version_name, action)) WITHOUT ROWID;
	 CREATE TABLE device_versions (
		app_id TEXT NOT NULL,
		device_id TEXT NOT NULL,
		version_name TEXT NOT NULL,
		channel TEXT NOT NULL,
		segment TEXT NOT NULL,
		platform TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, device_id)) WITHOUT ROWID;
	 CREATE TABLE adoption_changes (
		app_id TEXT NOT NULL,
		minute INTEGER NOT NULL,
		channel TEXT NOT NULL,
		segment TEXT NOT NULL,
		platform TEXT NOT NULL,
		version_name TEXT NOT NULL,
		delta INTEGER NOT NULL,
		PRIMARY KEY (app_id, minute, channel, segment, platform, version_name)) WITHOUT ROWID;
	 CREATE TABLE device_outcomes (
		app_id TEXT NOT NULL,
		version_name TEXT NOT NULL,
		device_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		arm TEXT NOT NULL,
		failed INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, version_name, device_id)) WITHOUT ROWID;
	 CREATE INDEX device_outcomes_window ON device_outcomes (app_id, channel, version_name, updated_at);`,
	// Devices the origin has seen (an event or an update check-in), for the
	// rollout guard's "established before the rollout" rule; outcomes carry
	// the reporting client's network and the device's first sighting.
	// Existing devices are backfilled from what the aggregates know.
	`CREATE TABLE devices_seen (
		app_id TEXT NOT NULL,
		device_id TEXT NOT NULL,
		first_seen INTEGER NOT NULL,
		checked_in INTEGER NOT NULL,
		last_seen INTEGER NOT NULL,
		PRIMARY KEY (app_id, device_id)) WITHOUT ROWID;
	 CREATE INDEX devices_seen_last ON devices_seen (last_seen);
	 CREATE TABLE event_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
	 ALTER TABLE device_outcomes ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
	 ALTER TABLE device_outcomes ADD COLUMN first_seen INTEGER NOT NULL DEFAULT 0;
	 INSERT INTO devices_seen (app_id, device_id, first_seen, checked_in, last_seen)
		SELECT app_id, lower(device_id), min(t), 0, max(t) FROM (
			SELECT app_id, device_id, updated_at AS t FROM device_versions
			UNION ALL SELECT app_id, device_id, updated_at FROM device_outcomes)
		GROUP BY app_id, lower(device_id);
	 UPDATE device_outcomes SET first_seen = coalesce((SELECT s.first_seen FROM devices_seen s
		WHERE s.app_id = device_outcomes.app_id AND s.device_id = lower(device_outcomes.device_id)), 0);
	 INSERT INTO event_meta (key, value) SELECT 'devices_seen', count(*) FROM devices_seen;`,
	// The device inventory (issue 20): each device's last check-in (what
	// it sent, where it was served and why) and a ring of its recent
	// check-ins and events (device_log, DeviceLogSize slots a device).
	// Listing pages by device id within an app, per filter.
	`CREATE TABLE devices (
		app_id TEXT NOT NULL,
		device_id TEXT NOT NULL,
		last_seen INTEGER NOT NULL,
		checked_in INTEGER NOT NULL,
		edge_id TEXT NOT NULL,
		platform TEXT NOT NULL,
		version_build TEXT NOT NULL,
		version_name TEXT NOT NULL,
		plugin_version TEXT NOT NULL,
		custom_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		reason TEXT NOT NULL,
		arm TEXT NOT NULL,
		outcome TEXT NOT NULL,
		bundle TEXT NOT NULL,
		PRIMARY KEY (app_id, device_id)) WITHOUT ROWID;
	 CREATE INDEX devices_channel ON devices (app_id, channel, device_id);
	 CREATE INDEX devices_version ON devices (app_id, version_name, device_id);
	 CREATE INDEX devices_platform ON devices (app_id, platform, device_id);
	 CREATE INDEX devices_last ON devices (last_seen);
	 CREATE TABLE device_log (
		app_id TEXT NOT NULL,
		device_id TEXT NOT NULL,
		slot INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		at INTEGER NOT NULL,
		edge_id TEXT NOT NULL,
		kind TEXT NOT NULL,
		action TEXT NOT NULL,
		version_name TEXT NOT NULL,
		target TEXT NOT NULL,
		channel TEXT NOT NULL,
		reason TEXT NOT NULL,
		PRIMARY KEY (app_id, device_id, slot)) WITHOUT ROWID;`,
}}
