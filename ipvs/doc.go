// Package ipvs keeps Linux kernel IPVS (the in-kernel layer-4 load balancer) equal to a
// desired state: virtual services and their real servers ("destinations"), with health,
// operator drains, quorum with a sorry server, and slow start applied on top.
//
// # Layers
//
//   - Kernel is the narrow interface to kernel IPVS, one method per generic-netlink operation
//     (GetServices, GetService, GetDestinations, New/Update/DelService,
//     New/Update/DelDestination, GetConfig/SetConfig, Close), in this package's own types
//     (KernelService, KernelDestination). Open returns the real one, a moby/ipvs handle behind
//     a mutex; ipvstest.Fake is an in-memory one that answers with the kernel's errors.
//   - Probe checks that the kernel has IPVS (/proc/net/ip_vs and the "IPVS" generic-netlink
//     family) and otherwise returns an error wrapping ErrUnavailable: "IPVS not available: the
//     kernel has no ip_vs (modprobe ip_vs?)". Open probes first, because without IPVS
//     moby/ipvs sends its requests to family 0, which the kernel acknowledges without doing
//     anything: every operation would pretend to succeed.
//   - Service, Destination, Desired are the plain Go types the caller (the agent) fills from
//     its configuration intersected with health. Validate checks a whole Desired.
//   - Reconciler makes the kernel match a Desired.
//
// # Reconciling against the live kernel
//
// The Reconciler never trusts the previous configuration. The first Apply dumps the kernel
// (one GetServices, one GetDestinations per owned service) into an in-memory mirror of what
// the kernel holds for the owned services; after that, every Apply, SetHealth, SetOverride
// and Tick computes each service's target and sends only the operations by which the mirror
// differs, updating the mirror on each success. A weight change among 10,000 services is one
// UpdateDestination, with no dump. Resync (every 60 s under Run, configurable) dumps again and
// corrects drift, such as an operator's ipvsadm edit. A failed operation re-reads that one
// service (GetService, GetDestinations), so the mirror always matches the kernel; the error is
// returned (typed: *OpError inside a *ReconcileError) and the next pass retries.
//
// Counters count every kernel operation by kind, so tests and operators can see the cost of
// each change.
//
// # Ownership
//
// The services this agent owns are recorded in a state file (Options.StateFile, e.g.
// DefaultStateFile), written atomically (temporary file, fsync, rename, fsync of the folder)
// before a service is created and after one is deleted. On start the Reconciler adopts the
// owned services it finds in the kernel and corrects only differences: it never flushes. A
// service the desired state names but the file does not list is adopted too (and an
// EventAdopted says so). Every other service is left alone: never modified, never deleted,
// not even by Shutdown. Owned services no longer desired are deleted. By default Shutdown
// leaves the owned services in place, so traffic keeps flowing across an agent restart
// (like keepalived -I); Options.RemoveOnShutdown deletes them.
//
// # Weights
//
// A destination's effective weight is its configured weight, then:
//
//   - SetHealth(vs, rs, false): drained (weight 0, existing connections finish) or removed
//     from the kernel, by the service's OnFailure policy. Destinations are healthy until
//     reported otherwise.
//   - SetHealth(vs, rs, true) after a failure: back, ramping linearly from 1 to the configured
//     weight over Service.SlowStart, on the injected Clock; Tick (every second under Run)
//     sends the steps, one UpdateDestination per changed weight.
//   - SetOverride(vs, rs, true): the operator's drain, weight 0 without removal; it survives
//     Apply and, through the state file, restarts, until SetOverride(vs, rs, false).
//   - Quorum: when fewer than MinUp destinations are up (healthy, not drained, weight > 0),
//     the quorum is lost: the sorry server is added, then the other destinations are drained
//     or removed by OnFailure. It comes back only when MinUp+Hysteresis are up.
//
// Status reports, per service and destination, the configured and effective weights, the
// reasons (healthy, drained, slow start, removed, sorry), what the kernel holds, and the
// kernel's statistics as of the last read (Resync, ReadService), with the counters.
//
// # Validation
//
// Apply validates the whole desired state before any kernel operation and rejects it with a
// *ValidationError (errors.Is ErrInvalid) listing every problem; nothing is half-applied.
// Kernel flag values are those of Linux's include/uapi/linux/ip_vs.h (see the Kernel*
// constants); weights are limited to 0-65535 as ipvsadm does.
//
// # Testing
//
// Unit tests run against ipvstest.Fake. Real IPVS is tested in the kernel lab (lab/kernel): the
// host kernel of this project's machines has no IPVS, so those tests move into a qemu guest on
// Debian's 6.1 kernel and check the results with ipvsadm as an independent witness.
package ipvs
