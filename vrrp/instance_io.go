package vrrp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"
)

// recvBackoff paces reads after a transport error that is not fatal.
const recvBackoff = 100 * time.Millisecond

// recvLoop reads the transport until ctx ends (nil) or the transport is
// closed under us (the error).
func (i *Instance) recvLoop(ctx context.Context) error {
	for {
		r, err := i.tr.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			i.recvErrors.Add(1)
			i.log.Warn("vrrp receive failed", slog.Any("error", err))
			t := time.NewTimer(recvBackoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		i.handlePacket(r)
	}
}

// handlePacket applies the receive checks of RFC 5798 §7.1 / RFC 3768 §7.1
// in order (TTL, then Parse, then the local checks), counts every outcome
// and hands an accepted advertisement to the Machine. Nothing in a packet
// can make it panic: Parse bounds every read (see the fuzz test).
func (i *Instance) handlePacket(r Received) {
	i.stats.Received()
	i.mu.Lock()
	relax, accept := i.opts.RelaxTTL, i.opts.Accept
	i.mu.Unlock()
	ttl := uint8(0)
	if r.TTL >= 0 && r.TTL <= 255 {
		ttl = uint8(r.TTL)
	}
	if err := CheckTTL(ttl, relax); err != nil {
		i.drop(r, err)
		return
	}
	p, err := Parse(r.Payload, r.Src, r.Dst, accept)
	if err != nil {
		i.drop(r, err)
		return
	}
	warn, err := i.wire.Load().Check(p)
	if err != nil {
		i.drop(r, err)
		return
	}
	if warn != nil {
		i.stats.Count(warn)
		i.log.Debug("vrrp advertisement accepted with a warning", slog.String("src", r.Src.String()), slog.Any("warning", warn))
	}
	i.stats.Accepted()
	i.advertsIn.Add(1)
	a := p.Advert(r.Src)
	if a.Priority == PriorityStop {
		i.prio0In.Add(1)
	}
	now := i.clock.Now()
	state, prio := i.m.StatePriority()
	i.mu.Lock()
	i.lastRecv[a.Src] = peerSeen{at: now, priority: a.Priority}
	i.drillAdvert(a, now)
	// Split-brain repair: a Master that hears a Master it beats (a lower
	// priority, or the same priority from a smaller address, RFC 5798
	// §6.4.3) re-announces, since the other one may have pulled the
	// traffic away (keepalived garp_lower_prio_repeat).
	holdoff := i.opts.Announce.LowerPriorityHoldoff
	beaten := a.Priority < prio || (a.Priority == prio && addrGreater(i.opts.PrimaryAddr, a.Src))
	reannounce := state == Master && a.Priority != PriorityStop && beaten &&
		holdoff > 0 && (i.lastLowerAt.IsZero() || now.Sub(i.lastLowerAt) >= holdoff)
	if reannounce {
		i.lastLowerAt = now
	}
	i.mu.Unlock()
	i.m.HandleAdvert(a)
	if reannounce {
		i.log.Info("lower-priority advertisement while master; announcing again",
			slog.String("src", a.Src.String()), slog.Int("priority", int(a.Priority)))
		i.startBurst()
	}
}

func (i *Instance) drop(r Received, err error) {
	i.stats.Count(err)
	i.log.Debug("vrrp packet dropped", slog.String("src", r.Src.String()), slog.Any("error", err))
}

// actions is the Instance seen as the Machine's Actions. Its methods run
// under the Machine's lock: they may read the Machine's fields (same
// package) but never call its methods, and they queue anything slow.
type actions Instance

var _ Actions = (*actions)(nil)

// SendAdvert builds the advertisement with the current WireConfig and sends
// it to every destination; sends are direct (a raw socket write does not
// block meaningfully).
func (a *actions) SendAdvert(priority uint8) {
	i := (*Instance)(a)
	p, err := i.wire.Load().Advert(priority)
	if err != nil {
		i.sendErrors.Add(1)
		i.log.Error("vrrp advertisement not built", slog.Any("error", err))
		return
	}
	i.mu.Lock()
	dsts, src := i.dsts, i.opts.PrimaryAddr
	i.mu.Unlock()
	sent := false
	for _, dst := range dsts {
		b, err := p.Marshal(src, dst)
		if err == nil {
			err = i.tr.Send(b, dst)
		}
		if err != nil {
			i.sendErrors.Add(1)
			if !i.shuttingDown.Load() || !errors.Is(err, net.ErrClosed) {
				i.log.Warn("vrrp advertisement not sent", slog.String("dst", dst.String()), slog.Any("error", err))
			}
			continue
		}
		sent = true
	}
	if !sent {
		return
	}
	i.stats.Sent()
	i.advertsOut.Add(1)
	if priority == PriorityStop {
		i.prio0Out.Add(1)
	}
	now := i.clock.Now()
	i.mu.Lock()
	i.lastSent = now
	i.mu.Unlock()
}

// AddVIPs starts a Master epoch: the worker installs the VIPs. An address
// owner's VIPs are its own permanent addresses (RFC 5798 §1.2 "IP Address
// Owner"): they are there already and are never added or removed.
func (a *actions) AddVIPs() {
	i := (*Instance)(a)
	now := i.clock.Now()
	owner := i.wire.Load().Owner
	i.vmu.Lock()
	i.holding = true
	i.epoch++
	epoch := i.epoch
	i.epochInfo = masterEpoch{BecameMaster: now}
	if owner {
		i.epochInfo.VIPsAdded, i.epochInfo.VIPsInstalledOK = now, true
	}
	i.vmu.Unlock()
	if !owner {
		i.vipq.push(i.syncVIPs)
	}
	i.mu.Lock()
	refresh := i.opts.Announce.Refresh
	i.mu.Unlock()
	if refresh > 0 {
		i.scheduleRefresh(epoch, refresh)
	}
}

// RemoveVIPs ends the Master epoch: the worker removes the VIPs (unless we
// are stopping with KeepVIPsOnShutdown).
func (a *actions) RemoveVIPs() {
	i := (*Instance)(a)
	i.mu.Lock()
	keep := i.opts.KeepVIPsOnShutdown && i.shuttingDown.Load()
	i.mu.Unlock()
	owner := i.wire.Load().Owner
	i.vmu.Lock()
	i.holding = false
	i.removing = !keep && !owner
	i.vmu.Unlock()
	if owner {
		return
	}
	if keep {
		i.log.Info("keeping the virtual addresses on shutdown")
		return
	}
	i.vipq.push(i.syncVIPs)
}

// Announce queues a burst for the current epoch.
func (a *actions) Announce() { (*Instance)(a).startBurst() }

// StateChanged records the transition and queues the callback, the sync
// group's reaction and the notify command.
func (a *actions) StateChanged(from, to State, reason Reason) {
	i := (*Instance)(a)
	now := i.clock.Now()
	m := i.m
	ev := StateChange{Instance: i.name, From: from, To: to, Reason: reason, At: now,
		Priority: m.effectivePriority(now)} // m.mu is held: see actions
	i.transitions.Add(1)
	i.mu.Lock()
	i.lastChange = ev
	i.drillTransition(ev)
	notify := i.opts.Notify
	g := i.group
	i.mu.Unlock()

	lvl := slog.LevelInfo
	if to == Fault {
		lvl = slog.LevelWarn
	}
	i.log.LogAttrs(context.Background(), lvl, "vrrp state changed",
		slog.String("from", from.String()), slog.String("to", to.String()),
		slog.String("reason", reason.String()), slog.Int("priority", int(ev.Priority)))

	i.evq.push(func(context.Context) {
		if cb := i.deps.OnStateChange; cb != nil {
			cb(ev)
		}
		if g != nil {
			g.memberMoved(i, ev)
		}
	})
	var argv []string
	switch to {
	case Master:
		argv = notify.Master
	case Backup:
		argv = notify.Backup
	case Fault:
		argv = notify.Fault
	}
	if len(argv) > 0 {
		i.cmdq.push(func(ctx context.Context) { i.runNotify(ctx, to.String(), argv, ev) })
	}
}

// StatePriority returns the state and the effective priority in one lock.
func (m *Machine) StatePriority() (State, uint8) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, m.effectivePriority(m.clock.Now())
}

// jobTimeout bounds one netlink or announce call of the worker.
const jobTimeout = 5 * time.Second

// syncVIPs is the worker's reconciliation: while Master, install the VIPs
// that are not installed (or changed) and remove those no longer wanted;
// after a RemoveVIPs, remove everything. Add and Remove are idempotent, so
// a retry or a repeated sync is harmless.
func (i *Instance) syncVIPs(ctx context.Context) {
	if i.wire.Load().Owner {
		return // the owner's addresses are permanent (AddVIPs)
	}
	i.vmu.Lock()
	holding, epoch := i.holding, i.epoch
	var add, del []VIP
	if holding {
		for _, v := range i.vips {
			if old, ok := i.installed[v.Addr()]; !ok || old != v {
				add = append(add, v)
			}
		}
		for a, v := range i.installed {
			if !slices.ContainsFunc(i.vips, func(w VIP) bool { return w.Addr() == a }) {
				del = append(del, v)
			}
		}
	} else if i.removing {
		i.removing = false
		del = slices.Clone(i.vips)
		for a, v := range i.installed {
			if !slices.ContainsFunc(del, func(w VIP) bool { return w.Addr() == a }) {
				del = append(del, v)
			}
		}
	}
	i.vmu.Unlock()

	if len(del) > 0 {
		jctx, cancel := context.WithTimeout(ctx, jobTimeout)
		err := i.addrs.Remove(jctx, del)
		cancel()
		i.vmu.Lock()
		for _, v := range del {
			delete(i.installed, v.Addr())
		}
		i.vmu.Unlock()
		if err != nil {
			i.vipErrors.Add(1)
			i.log.Error("removing virtual addresses failed", slog.Any("vips", del), slog.Any("error", err))
		} else {
			i.log.Debug("virtual addresses removed", slog.Any("vips", del))
		}
	}
	if len(add) == 0 {
		return
	}
	jctx, cancel := context.WithTimeout(ctx, jobTimeout)
	err := i.addrs.Add(jctx, add)
	cancel()
	now := i.clock.Now()
	if err != nil {
		i.vipErrors.Add(1)
		i.log.Error("adding virtual addresses failed; retrying", slog.Any("vips", add), slog.Any("error", err))
		i.clock.AfterFunc(vipRetryInterval, func() {
			i.vmu.Lock()
			again := i.holding && i.epoch == epoch
			i.vmu.Unlock()
			if again {
				i.vipq.push(i.syncVIPs)
			}
		})
		return
	}
	i.vmu.Lock()
	current := i.holding && i.epoch == epoch
	if current {
		for _, v := range add {
			i.installed[v.Addr()] = v
		}
		if i.epochInfo.VIPsAdded.IsZero() {
			i.epochInfo.VIPsAdded = now
		}
		i.epochInfo.VIPsInstalledOK = true
	}
	i.vmu.Unlock()
	if current {
		i.log.Debug("virtual addresses added", slog.Any("vips", add))
		i.mu.Lock()
		i.drillVIPsAdded(epoch, now)
		i.mu.Unlock()
	}
	// Not current: the epoch ended while we added; the RemoveVIPs that
	// ended it queued a sync after us, which removes everything.
}

// startBurst queues the first round of a burst for the current epoch; the
// next rounds follow Announce.Interval apart on the Clock.
func (i *Instance) startBurst() {
	i.vmu.Lock()
	holding, epoch := i.holding, i.epoch
	i.vmu.Unlock()
	if !holding || i.deps.Announcer == nil {
		return
	}
	i.mu.Lock()
	count := i.opts.Announce.Count
	i.mu.Unlock()
	i.vipq.push(func(ctx context.Context) { i.announceRound(ctx, epoch, 1, count) })
}

// scheduleRefresh sends one round every d while the epoch lasts.
func (i *Instance) scheduleRefresh(epoch uint64, d time.Duration) {
	if i.deps.Announcer == nil {
		return
	}
	i.clock.AfterFunc(d, func() {
		i.vmu.Lock()
		current := i.holding && i.epoch == epoch
		i.vmu.Unlock()
		if !current {
			return
		}
		if i.vipq.push(func(ctx context.Context) { i.announceRound(ctx, epoch, 1, 1) }) {
			i.scheduleRefresh(epoch, d)
		}
	})
}

// announceRound sends round n of count, if the epoch is still current, and
// schedules the next.
func (i *Instance) announceRound(ctx context.Context, epoch uint64, n, count int) {
	i.vmu.Lock()
	current := i.holding && i.epoch == epoch
	addrs := make([]netip.Addr, 0, len(i.vips))
	for _, v := range i.vips {
		addrs = append(addrs, v.Addr())
	}
	now := i.clock.Now()
	first := false
	if current {
		i.epochInfo.AnnounceRounds++
		if i.epochInfo.FirstAnnounce.IsZero() {
			i.epochInfo.FirstAnnounce = now
			first = true
		}
	}
	i.vmu.Unlock()
	if !current {
		return
	}
	if first {
		i.mu.Lock()
		i.drillAnnounced(epoch, now)
		i.mu.Unlock()
	}
	i.announceRounds.Add(1)
	jctx, cancel := context.WithTimeout(ctx, jobTimeout)
	err := i.deps.Announcer.Announce(jctx, addrs)
	cancel()
	if err != nil {
		i.announceErrors.Add(1)
		i.log.Warn("announcing virtual addresses failed", slog.Int("round", n), slog.Any("error", err))
	}
	if n >= count {
		return
	}
	i.mu.Lock()
	pause := i.opts.Announce.Interval
	i.mu.Unlock()
	next := func() { i.vipq.push(func(ctx context.Context) { i.announceRound(ctx, epoch, n+1, count) }) }
	if pause <= 0 {
		next()
		return
	}
	i.clock.AfterFunc(pause, next)
}

// watchVIPs re-installs VIPs removed behind our back while we are Master.
func (i *Instance) watchVIPs(ctx context.Context, w AddressWatcher) {
	err := w.WatchRemoved(ctx, func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		i.vmu.Lock()
		v, ok := i.installed[a]
		if ok {
			delete(i.installed, a)
		}
		holding := i.holding
		i.vmu.Unlock()
		if !ok || !holding {
			return
		}
		i.vipReadds.Add(1)
		i.log.Warn("virtual address removed behind our back; adding it again", slog.String("vip", v.String()))
		i.vipq.push(i.syncVIPs)
		i.startBurst()
	})
	if err != nil && ctx.Err() == nil {
		i.log.Error("watching virtual addresses failed; removed addresses will not be restored", slog.Any("error", err))
	}
}
