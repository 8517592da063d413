package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Feature is a top-level block type that a build of Fulcrum may or may not
// implement.
type Feature string

// Features.
const (
	FeatureVRRP          Feature = "vrrp_instance"
	FeatureSyncGroup     Feature = "sync_group"
	FeatureVirtualServer Feature = "virtual_server"
	FeatureProxy         Feature = "proxy"
)

// AllFeatures returns a new set holding every feature, for tests and tools
// that check a file against the whole schema.
func AllFeatures() map[Feature]bool {
	return map[Feature]bool{
		FeatureVRRP:          true,
		FeatureSyncGroup:     true,
		FeatureVirtualServer: true,
		FeatureProxy:         true,
	}
}

// Options tell the decoder what the running binary can do.
type Options struct {
	// Supported holds the features the running binary implements. A block of
	// any other feature is an error ("... is not supported yet") rather than
	// being ignored. A nil map supports none.
	Supported map[Feature]bool
}

// Load reads and decodes the file at path. Relative paths inside it (file(),
// certificate files, track_file) are resolved against the file's directory.
// The Config is nil whenever the diagnostics hold an error; the Diagnostics
// are never nil.
func Load(path string, opts Options) (*Config, *Diagnostics) {
	return load(path, opts, osSystem())
}

// Parse decodes src as if read from filename (used in diagnostics and to
// resolve relative paths). The Config is nil whenever the diagnostics hold
// an error; the Diagnostics are never nil.
func Parse(src []byte, filename string, opts Options) (*Config, *Diagnostics) {
	return parse(src, filename, opts, osSystem())
}

func load(path string, opts Options, sys system) (*Config, *Diagnostics) {
	src, err := sys.readFile(path, maxConfigFileSize)
	if err != nil {
		return nil, &Diagnostics{diags: hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration file",
			Detail:   fmt.Sprintf("%s.", err),
		}}}
	}
	return parse(src, path, opts, sys)
}

func parse(src []byte, filename string, opts Options, sys system) (*Config, *Diagnostics) {
	if filename == "" {
		filename = "<input>"
	}
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, filename)
	out := &Diagnostics{files: maskedFiles(p.Files())}
	if diags.HasErrors() || f == nil {
		// Decoding a file with syntax errors mostly yields noise about
		// the parts the parser had to skip.
		out.diags = sortDiagnostics(diags)
		return nil, out
	}

	baseDir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		baseDir = filepath.Dir(filename)
	}
	d := &decoder{
		diags:    diags,
		ctx:      evalContext(baseDir, sys),
		baseDir:  baseDir,
		sys:      sys,
		opts:     opts,
		filename: filename,
	}
	cfg := d.decodeFile(f.Body)
	out.diags = sortDiagnostics(d.diags)
	if out.HasErrors() {
		return nil, out
	}
	return cfg, out
}

// decoder turns the HCL body into a Config, collecting diagnostics. It keeps
// going after errors so that one run reports every independent problem;
// a value that failed to decode is left zero and checks that depend on it
// are skipped, so one mistake is reported once.
type decoder struct {
	diags    hcl.Diagnostics
	ctx      *hcl.EvalContext
	baseDir  string
	sys      system
	opts     Options
	filename string

	node *Node
	// scripts are the vrrp_script blocks by name, for track_script.
	scripts map[string]VRRPScript
	// ifaceRefs are the interface names used anywhere, checked against
	// node.interfaces once everything is decoded.
	ifaceRefs []nameRef
}

// nameRef is a name used somewhere, with where it was used.
type nameRef struct {
	name string
	rng  hcl.Range
}

func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

func (d *decoder) warnf(subject hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

func (d *decoder) decodeBody(body hcl.Body, v any) {
	d.diags = append(d.diags, gohcl.DecodeBody(body, d.ctx, v)...)
}

func (d *decoder) decodeFile(body hcl.Body) *Config {
	var hdr fileHeader
	d.decodeBody(body, &hdr)

	cfg := &Config{Path: d.filename}
	cfg.Node = d.decodeNode(&hdr.Node)
	d.node = &cfg.Node
	cfg.Control = d.decodeControl(hdr.Control)
	cfg.Metrics = d.decodeMetrics(hdr.Metrics)
	cfg.Log = d.decodeLog(hdr.Log)

	// Names are unique per block type; virtual servers and proxies share
	// one namespace because track_service names either.
	d.uniqueNames("vrrp_script", hdr.VRRPScripts, nil)
	vrrpNames := d.uniqueNames("vrrp_instance", hdr.VRRPInstances, nil)
	d.uniqueNames("sync_group", hdr.SyncGroups, nil)
	services := map[string]serviceRef{}
	d.uniqueNames("virtual_server", hdr.VirtualServers, services)
	d.uniqueNames("proxy", hdr.Proxies, services)

	if d.supported(FeatureVRRP, hdr.VRRPScripts) {
		d.scripts = map[string]VRRPScript{}
		for _, fb := range hdr.VRRPScripts {
			var raw vrrpScriptBlock
			d.decodeBody(fb.Body, &raw)
			sc := d.decodeVRRPScript(fb.header(), &raw)
			cfg.VRRPScripts = append(cfg.VRRPScripts, sc)
			if _, dup := d.scripts[sc.Name]; !dup {
				d.scripts[sc.Name] = sc
			}
		}
	}
	if d.supported(FeatureVRRP, hdr.VRRPInstances) {
		raws := make([]*vrrpInstanceBlock, len(hdr.VRRPInstances))
		for i, fb := range hdr.VRRPInstances {
			raws[i] = &vrrpInstanceBlock{}
			d.decodeBody(fb.Body, raws[i])
			cfg.VRRPInstances = append(cfg.VRRPInstances, d.decodeVRRPInstance(fb.header(), raws[i], services))
		}
		d.validateVRRPInstances(cfg.VRRPInstances, raws)
	}
	if d.supported(FeatureSyncGroup, hdr.SyncGroups) {
		member := map[string]nameRef{}
		for _, fb := range hdr.SyncGroups {
			var raw syncGroupBlock
			d.decodeBody(fb.Body, &raw)
			cfg.SyncGroups = append(cfg.SyncGroups, d.decodeSyncGroup(fb.header(), &raw, vrrpNames, member))
		}
	}
	if d.supported(FeatureVirtualServer, hdr.VirtualServers) {
		raws := make([]*virtualServerBlock, len(hdr.VirtualServers))
		for i, fb := range hdr.VirtualServers {
			raws[i] = &virtualServerBlock{}
			d.decodeBody(fb.Body, raws[i])
			cfg.VirtualServers = append(cfg.VirtualServers, d.decodeVirtualServer(fb.header(), raws[i]))
		}
		d.validateVirtualServers(cfg.VirtualServers, raws)
	}
	if d.supported(FeatureProxy, hdr.Proxies) {
		raws := make([]*proxyBlock, len(hdr.Proxies))
		for i, fb := range hdr.Proxies {
			raws[i] = &proxyBlock{}
			d.decodeBody(fb.Body, raws[i])
			cfg.Proxies = append(cfg.Proxies, d.decodeProxy(fb.header(), raws[i]))
		}
		d.validateProxies(cfg.Proxies, raws)
	}

	d.checkInterfaceRefs()
	return cfg
}

// supported reports whether feature f is supported, and reports each of
// blocks as an error when it is not.
func (d *decoder) supported(f Feature, blocks []featureBlock) bool {
	if d.opts.Supported[f] {
		return true
	}
	for _, b := range blocks {
		d.errorf(b.DefRange, fmt.Sprintf("%s is not supported yet", f),
			"This build of Fulcrum does not implement %s blocks yet, so it cannot apply this configuration. Remove the block or run a build that supports it.", f)
	}
	return false
}

// serviceRef is a virtual_server or proxy name as track_service sees it.
type serviceRef struct {
	kind ServiceKind
	rng  hcl.Range
}

// uniqueNames checks the names of feature blocks of one type: valid, and
// unique (within the type, and within services when that map is given).
// It returns every name, valid or not, for reference checks.
func (d *decoder) uniqueNames(kind string, blocks []featureBlock, services map[string]serviceRef) []string {
	names := make([]string, 0, len(blocks))
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		names = append(names, b.Name)
		if err := checkName(b.Name); err != nil {
			d.errorf(b.NameRange, "Invalid name", "%s.", err)
			continue
		}
		if first, dup := seen[b.Name]; dup {
			d.duplicate(kind, b.Name, first, b.NameRange)
			continue
		}
		seen[b.Name] = b.NameRange
		if services == nil {
			continue
		}
		if other, dup := services[b.Name]; dup {
			d.errorf(b.NameRange, "Duplicate service name",
				"A %s named %q was already defined at %s. Virtual servers and proxies share one set of names, because track_service refers to either.",
				other.kind, b.Name, pos(other.rng))
			continue
		}
		services[b.Name] = serviceRef{kind: ServiceKind(kind), rng: b.NameRange}
	}
	return names
}

func (d *decoder) duplicate(kind, name string, first, second hcl.Range) {
	d.errorf(second, fmt.Sprintf("Duplicate %s name", kind),
		"A %s named %q was already defined at %s (line %d). Names must be unique among %s blocks.",
		kind, name, pos(first), first.Start.Line, kind)
}

// uniqueIn tracks names within one scope (real servers of a virtual server,
// backends of a proxy, ...).
type uniqueIn struct {
	d    *decoder
	kind string
	seen map[string]hcl.Range
}

func (d *decoder) newUnique(kind string) *uniqueIn {
	return &uniqueIn{d: d, kind: kind, seen: map[string]hcl.Range{}}
}

// add validates and records a name; false when it is invalid or a
// duplicate (reported).
func (u *uniqueIn) add(name string, rng hcl.Range) bool {
	if err := checkName(name); err != nil {
		u.d.errorf(rng, "Invalid name", "%s.", err)
		return false
	}
	if first, dup := u.seen[name]; dup {
		u.d.duplicate(u.kind, name, first, rng)
		return false
	}
	u.seen[name] = rng
	return true
}

// names returns the recorded names, sorted.
func (u *uniqueIn) names() []string {
	out := make([]string, 0, len(u.seen))
	for n := range u.seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// unknownRef reports a reference to a name that is not defined.
func (d *decoder) unknownRef(rng hcl.Range, kind, name, scope string, known []string) {
	where := ""
	if scope != "" {
		where = " in " + scope
	}
	d.errorf(rng, fmt.Sprintf("Unknown %s", kind), "No %s named %q is defined%s.%s", kind, name, where, didYouMean(name, known))
}

// ---- node-wide blocks --------------------------------------------------------

func (d *decoder) decodeNode(b *nodeBlock) Node {
	n := Node{Name: b.Name, Source: b.DefRange}
	if b.DefRange == (hcl.Range{}) {
		return n // missing; gohcl has reported it
	}
	if err := checkName(b.Name); err != nil {
		d.errorf(b.NameRange, "Invalid name", "%s.", err)
	}
	ifaces, rngs, _ := d.strList(b.Interfaces)
	seen := map[string]hcl.Range{}
	for i, name := range ifaces {
		if err := checkInterfaceName(name); err != nil {
			d.errorf(rngs[i], "Invalid interface name", "%s.", err)
			continue
		}
		if first, dup := seen[name]; dup {
			d.errorf(rngs[i], "Duplicate interface", "Interface %q is already listed at %s.", name, pos(first))
			continue
		}
		seen[name] = rngs[i]
		n.Interfaces = append(n.Interfaces, name)
	}
	addrs, arngs, _ := d.ipList(b.Addresses)
	seenAddr := map[netip.Addr]hcl.Range{}
	for i, a := range addrs {
		if first, dup := seenAddr[a]; dup {
			d.errorf(arngs[i], "Duplicate address", "Address %s is already listed at %s.", a, pos(first))
			continue
		}
		seenAddr[a] = arngs[i]
		n.Addresses = append(n.Addresses, a)
	}
	return n
}

func (d *decoder) decodeControl(b *controlBlock) Control {
	c := Control{Socket: DefaultControlSocket}
	if b == nil {
		return c
	}
	c.Source = b.DefRange
	if s, st := d.str(b.Socket); st == valid {
		switch {
		case !filepath.IsAbs(s):
			d.errorf(b.Socket.Expr.Range(), "Invalid socket", "The control socket must be an absolute path, not %q.", s)
		case len(s) > 107:
			// sun_path is 108 bytes including the terminating NUL (unix(7)).
			d.errorf(b.Socket.Expr.Range(), "Invalid socket", "The control socket path is %d bytes; unix socket paths are at most 107.", len(s))
		default:
			c.Socket = filepath.Clean(s)
		}
	}
	return c
}

// Metrics defaults.
const (
	defaultMetricsListen = "127.0.0.1:9712"
	defaultMetricsPath   = "/metrics"
)

func (d *decoder) decodeMetrics(b *metricsBlock) *Metrics {
	if b == nil {
		return nil
	}
	m := &Metrics{Source: b.DefRange, Path: defaultMetricsPath}
	m.Listen, _ = parseAddrPort(defaultMetricsListen, false)
	if ap, st := d.addrPort(b.Listen, false); st == valid {
		if ap.Port() == 0 {
			d.errorf(b.Listen.Expr.Range(), "Invalid port", "The metrics listener needs a port between 1 and 65535.")
		} else {
			m.Listen = ap
		}
	}
	if p, st := d.str(b.Path); st == valid {
		if err := checkURLPath(p); err != nil {
			d.errorf(b.Path.Expr.Range(), "Invalid path", "%s.", err)
		} else {
			m.Path = p
		}
	}
	return m
}

func (d *decoder) decodeLog(b *logBlock) Log {
	l := Log{Level: LogInfo, Target: LogTargetAuto}
	if b == nil {
		return l
	}
	l.Source = b.DefRange
	if v, st := d.enum(b.Level, "log level", []string{"debug", "info", "warn", "error"}); st == valid {
		l.Level = LogLevel(v)
	}
	if v, st := d.enum(b.Target, "log target", []string{"auto", "journald", "stderr"}); st == valid {
		l.Target = LogTarget(v)
	}
	return l
}

// checkInterfaceRefs checks every interface name used against
// node.interfaces, when the node lists its interfaces.
func (d *decoder) checkInterfaceRefs() {
	if d.node == nil || len(d.node.Interfaces) == 0 {
		return
	}
	for _, ref := range d.ifaceRefs {
		found := false
		for _, n := range d.node.Interfaces {
			if n == ref.name {
				found = true
				break
			}
		}
		if !found {
			d.errorf(ref.rng, "Unknown interface",
				"Interface %q is not in the node's interfaces list (%s).%s",
				ref.name, quoteList(d.node.Interfaces), didYouMean(ref.name, d.node.Interfaces))
		}
	}
}

// interfaceRef validates an interface name and records its use.
func (d *decoder) interfaceRef(name string, rng hcl.Range) bool {
	if err := checkInterfaceName(name); err != nil {
		d.errorf(rng, "Invalid interface name", "%s.", err)
		return false
	}
	d.ifaceRefs = append(d.ifaceRefs, nameRef{name: name, rng: rng})
	return true
}
