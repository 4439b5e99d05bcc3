package snapshot

// Placement is where a device falls in an app's segmentation, without
// deciding an update: the analytics dimensions of a device event.
type Placement struct {
	Channel string // "" when the device resolves to no channel
	Segment string // override, self_assigned, segment:NAME or default
	Arm     string // rollout or base on a channel with a rollout, the A/B arm name, or ""
}

// Place returns where the device of r falls under s. Unlike Resolve it needs
// no prior Validate: versions that do not parse simply match no version
// rule. r.DeviceID must be lower-case.
func Place(s *Snapshot, r *Request) Placement {
	app := s.App(r.AppID)
	if app == nil {
		return Placement{}
	}
	if v, ok := ParseVersion(coerceBuild(r.VersionBuild)); ok {
		r.build = v
	}
	if v, ok := ParseVersion(r.PluginVersion); ok {
		r.plugin = v
	}
	dev, devOK := r.Device()
	ch, rule, seg, _ := pickChannel(app, r, dev, devOK)
	if ch == nil {
		return Placement{}
	}
	p := Placement{Channel: ch.Name, Segment: rule}
	if rule == RuleSegment {
		p.Segment = "segment:" + seg
	}
	switch {
	case ch.Rollout != nil:
		// The arm the device is served from, as pickBundle decides it: a
		// paused rollout keeps only the devices already on its bundle.
		p.Arm = "base"
		if ch.Rollout.Paused {
			if r.VersionName == ch.Rollout.Bundle {
				p.Arm = "rollout"
			}
		} else if bucket(ch.Rollout.seed, r.DeviceID) < ch.Rollout.BPS {
			p.Arm = "rollout"
		}
	case ch.AB != nil:
		bkt, lo := bucket(ch.AB.seed, r.DeviceID), 0
		for i := range ch.AB.Arms {
			if a := &ch.AB.Arms[i]; bkt < lo+a.BPS {
				p.Arm = a.Name
				break
			}
			lo += ch.AB.Arms[i].BPS
		}
	}
	return p
}

// CoerceBuild applies Capgo's fixSemver to a native version: "builtin" and
// "unknown" mean 0.0.0, and a version like "1.0" is written "1.0.0". ok is
// false when s does not parse.
func CoerceBuild(s string) (string, bool) {
	v, ok := ParseVersion(coerceBuild(s))
	if !ok {
		return s, false
	}
	return v.String(), true
}
