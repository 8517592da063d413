package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

func runFailover(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("failover", "[INSTANCE | -all] [-wait] [-hold 30s] [-timeout 10s] [-socket PATH]", stderr)
	all := fs.Bool("all", false, "drill every VRRP instance")
	wait := fs.Bool("wait", false, "wait until the handover is seen, and fail if it is not")
	hold := fs.Duration("hold", agent.DefaultFailoverHold, "how long the drill lasts: a master stays backup, a backup advertises priority 254")
	timeout := fs.Duration("timeout", agent.DefaultFailoverTimeout, "how long -wait waits for the handover")
	socket := socketFlag(fs)
	// Flags may follow the instance name: parse, take a name, go on.
	var names []string
	rest := args
	for {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch {
	case len(names) > 1:
		fmt.Fprintf(stderr, "fulcrum failover: one instance at most, got %s\n", strings.Join(names, " "))
		fs.Usage()
		return exitUsage
	case *all && len(names) == 1:
		fmt.Fprintf(stderr, "fulcrum failover: name an instance or give -all, not both\n")
		fs.Usage()
		return exitUsage
	case *hold <= 0 || *timeout <= 0:
		fmt.Fprintf(stderr, "fulcrum failover: -hold and -timeout must be positive\n")
		return exitUsage
	}
	req := agent.FailoverRequest{All: *all, Hold: hold.String(), Wait: *wait, Timeout: timeout.String()}
	if len(names) == 1 {
		req.Instance = names[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+requestTimeout)
	defer cancel()
	res, err := agent.NewClient(*socket).Failover(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum failover: %v\n", err)
		return exitFailed
	}
	for _, r := range res.Results {
		printFailover(stdout, r, *hold)
	}
	if !res.OK {
		return exitFailed
	}
	return exitOK
}

// printFailover explains one instance's drill.
func printFailover(w io.Writer, r agent.FailoverResult, hold time.Duration) {
	if r.Action == "" {
		fmt.Fprintf(w, "%s: FAILED (was %s): %s\n", r.Instance, r.FromState, r.Error)
		return
	}
	fmt.Fprintf(w, "%s: %s -> %s (%s, hold %s)\n", r.Instance, r.FromState, r.State, r.Action, hold)
	h := r.Handover
	if !r.Waited {
		fmt.Fprintf(w, "  drill started; not waiting for the handover (use -wait)\n")
	}
	if h != nil {
		switch h.Action {
		case "force_backup":
			if h.NewMaster != "" {
				fmt.Fprintf(w, "  new master %s (priority %d)\n", h.NewMaster, h.NewMasterPriority)
			}
		case "takeover":
			if h.OldMaster != "" {
				fmt.Fprintf(w, "  took over from %s\n", h.OldMaster)
			}
		}
		if h.AdvertGap != "" {
			fmt.Fprintf(w, "  advert gap %s: last advert from the old master %s, first from the new master %s\n",
				h.AdvertGap, clock(h.LastOldMasterAdvert), clock(h.FirstNewMasterAdvert))
		}
		if h.AnnounceGap != "" {
			fmt.Fprintf(w, "  VIP add -> first GARP/NA %s (VIPs added %s, first announcement %s)\n",
				h.AnnounceGap, clock(h.VIPsAdded), clock(h.FirstAnnounce))
		} else if h.Action == "force_backup" && r.Waited {
			fmt.Fprintf(w, "  VIP add -> first GARP/NA is measured on the new master: see its `fulcrum status`\n")
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", r.Error)
	}
}

// clock renders a time of day with milliseconds, or "?".
func clock(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.Local().Format("15:04:05.000")
}

// printVRRP prints the vrrp subsystem's detail, if it has the instances
// list; it reports whether it did.
func printVRRP(w io.Writer, detail map[string]any, now time.Time) bool {
	raw, ok := detail["instances"]
	if !ok {
		return false
	}
	var instances []agent.VRRPInstanceStatus
	if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &instances) != nil {
		return false
	}
	for _, in := range instances {
		fmt.Fprintf(w, "  instance %s: %s\n", in.Name, strings.ToUpper(in.State))
		fmt.Fprintf(w, "    %s vrid %d v%d, priority %d (configured %d), advert %s", in.Interface, in.VRID, in.Version, in.Priority, in.BasePriority, in.AdvertInterval)
		if in.PrimaryAddress != "" {
			fmt.Fprintf(w, ", from %s", in.PrimaryAddress)
		}
		fmt.Fprintln(w)
		if in.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", in.Error)
		}
		if in.MasterAddress != "" && in.State != "master" {
			fmt.Fprintf(w, "    master %s (priority %d, advert %s)\n", in.MasterAddress, in.MasterPriority, in.MasterAdvertInterval)
		}
		if t := in.LastTransition; t != nil {
			fmt.Fprintf(w, "    last transition %s -> %s (%s) %s ago\n", t.From, t.To, t.Reason, now.Sub(t.At).Round(time.Millisecond))
		}
		fmt.Fprintf(w, "    vips: %s (%d installed)\n", strings.Join(in.VIPs, ", "), in.VIPsInstalled)
		if m := in.Master; m != nil && in.State == "master" {
			line := "    master since " + m.Since.Local().Format(time.RFC3339)
			if m.VIPsAdded != nil && m.FirstAnnounce != nil {
				line += fmt.Sprintf("; VIP add -> first GARP/NA %s; %d announcement rounds", m.FirstAnnounce.Sub(*m.VIPsAdded), m.AnnounceRounds)
			}
			fmt.Fprintln(w, line)
		}
		if in.SyncGroup != "" {
			fmt.Fprintf(w, "    sync group %s\n", in.SyncGroup)
		}
		if in.HoldUntil != nil {
			fmt.Fprintf(w, "    drill: holding backup until %s\n", in.HoldUntil.Local().Format(time.RFC3339))
		}
		if in.BoostUntil != nil {
			fmt.Fprintf(w, "    drill: advertising 254 until %s\n", in.BoostUntil.Local().Format(time.RFC3339))
		}
		var trackers []string
		for _, t := range in.Trackers {
			if t.Name == "sync_group" && t.Up {
				continue
			}
			s := t.Name + " " + map[bool]string{true: "up", false: "DOWN"}[t.Up]
			if t.Weight != 0 {
				s += fmt.Sprintf(" (%+d)", t.Weight)
			}
			trackers = append(trackers, s)
		}
		if len(trackers) > 0 {
			fmt.Fprintf(w, "    trackers: %s\n", strings.Join(trackers, ", "))
		}
		c := in.Counters
		fmt.Fprintf(w, "    adverts in %d, out %d; priority 0 in %d, out %d; transitions %d\n",
			c.AdvertsIn, c.AdvertsOut, c.Priority0In, c.Priority0Out, c.Transitions)
		if len(c.Drops) > 0 {
			reasons := make([]string, 0, len(c.Drops))
			for r, n := range c.Drops {
				reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
			}
			sort.Strings(reasons)
			fmt.Fprintf(w, "    drops: %s\n", strings.Join(reasons, ", "))
		}
		if errs := c.SendErrors + c.RecvErrors + c.VIPErrors + c.AnnounceErrors + c.NotifyFailures; errs > 0 {
			fmt.Fprintf(w, "    errors: send %d, recv %d, vip %d, announce %d, notify %d\n",
				c.SendErrors, c.RecvErrors, c.VIPErrors, c.AnnounceErrors, c.NotifyFailures)
		}
		if f := in.LastFailover; f != nil {
			line := fmt.Sprintf("    last failover: %s at %s", f.Action, f.StartedAt.Local().Format(time.RFC3339))
			switch {
			case f.Failed:
				line += ": FAILED: " + f.Error
			case f.Done:
				line += ": done"
			default:
				line += ": in progress"
			}
			if f.AdvertGap != "" {
				line += ", advert gap " + f.AdvertGap
			}
			if f.AnnounceGap != "" {
				line += ", VIP add -> first GARP/NA " + f.AnnounceGap
			}
			fmt.Fprintln(w, line)
		}
	}
	if raw, ok := detail["sync_groups"]; ok {
		var groups []agent.VRRPSyncGroupStatus
		if b, err := json.Marshal(raw); err == nil && json.Unmarshal(b, &groups) == nil {
			for _, g := range groups {
				fmt.Fprintf(w, "  sync group %s: %s\n", g.Name, strings.Join(g.Instances, ", "))
			}
		}
	}
	return true
}
