package config

import (
	"net/netip"
	"regexp"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Config is one node's validated configuration. Every value is a plain Go
// value with its defaults applied; nothing in it needs HCL to interpret.
//
// Load and Parse return a Config only when the file has no errors, so the
// agent never applies half a configuration.
type Config struct {
	// Path is the file name the configuration was read from, as given.
	Path string

	Node    Node
	Control Control
	// Metrics is nil when the file has no metrics block (metrics are off).
	Metrics *Metrics
	Log     Log

	VRRPScripts    []VRRPScript
	VRRPInstances  []VRRPInstance
	SyncGroups     []SyncGroup
	VirtualServers []VirtualServer
	Proxies        []Proxy
}

// Node is the node's identity: node "NAME" { ... }.
type Node struct {
	Name string
	// Interfaces, when not empty, is the complete list of network interfaces
	// the configuration may name; any other interface name is an error.
	Interfaces []string
	// Addresses are the addresses this node owns permanently (configured on
	// its interfaces outside Fulcrum). A VRRP instance whose virtual IPs are
	// all owned addresses is the address owner and must use priority 255.
	Addresses []netip.Addr
	Source    hcl.Range
}

// DefaultControlSocket is the control socket path used when the file has no
// control block or the block has no socket attribute.
const DefaultControlSocket = "/run/fulcrum/fulcrum.sock"

// Control configures the agent's control API.
type Control struct {
	// Socket is the absolute path of the unix socket of the control API.
	Socket string
	// Source is the control block's position; zero when the block is absent.
	Source hcl.Range
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen netip.AddrPort
	Path   string
	Source hcl.Range
}

// LogLevel is the minimum level of messages the agent logs.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogTarget is where the agent sends its log.
type LogTarget string

// Log targets. LogTargetAuto means journald when the agent runs under
// systemd with a journal socket, stderr otherwise.
const (
	LogTargetAuto     LogTarget = "auto"
	LogTargetJournald LogTarget = "journald"
	LogTargetStderr   LogTarget = "stderr"
)

// Log configures the agent's log.
type Log struct {
	Level  LogLevel
	Target LogTarget
	Source hcl.Range
}

// AddressFamily is IPv4 or IPv6.
type AddressFamily string

// Address families.
const (
	IPv4 AddressFamily = "ipv4"
	IPv6 AddressFamily = "ipv6"
)

// FamilyOf returns the address family of a.
func FamilyOf(a netip.Addr) AddressFamily {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// VRRPVersion is 2 (RFC 3768) or 3 (RFC 5798).
type VRRPVersion uint8

// VRRP protocol versions.
const (
	VRRPv2 VRRPVersion = 2
	VRRPv3 VRRPVersion = 3
)

// VRRPInstance is one virtual router: vrrp_instance "NAME" { ... }.
type VRRPInstance struct {
	Name   string
	Source hcl.Range

	Interface       string
	VirtualRouterID uint8
	Priority        uint8
	AdvertInterval  time.Duration
	Version         VRRPVersion
	Preempt         bool
	PreemptDelay    time.Duration
	// Family is the address family of every virtual IP of the instance.
	Family AddressFamily
	// AddressOwner is true when every virtual IP is one of Node.Addresses
	// (then Priority is 255).
	AddressOwner bool

	// Unicast is nil for multicast advertisements.
	Unicast *Unicast
	// Authentication is nil when no authentication is configured (VRRPv2 only).
	Authentication *Authentication
	// VirtualIPs holds the virtual_ip blocks and the virtual_ips shorthand,
	// blocks first, each in file order.
	VirtualIPs       []VirtualIP
	AcceptV2Checksum bool
	GARP             GARP

	TrackInterfaces []Track
	TrackProcesses  []Track
	// TrackFiles' Name is the absolute path of the file.
	TrackFiles    []Track
	TrackServices []TrackedService
	// TrackScripts name vrrp_script blocks; Weight is the track_script's, else the script's.
	TrackScripts []Track
	Notify       Notify

	KeepVIPsOnShutdown bool
}

// Unicast replaces multicast advertisements with unicast to fixed peers.
type Unicast struct {
	// SourceAddress is the source of advertisements; invalid (zero) means the
	// interface's primary address.
	SourceAddress netip.Addr
	Peers         []netip.Addr
	// RelaxTTL accepts advertisements whose TTL/hop limit is not 255.
	RelaxTTL bool
}

// AuthType is a VRRPv2 authentication type.
type AuthType string

// AuthPass is simple text password authentication (RFC 3768 §5.3.6, type 1).
const AuthPass AuthType = "pass"

// Authentication is VRRPv2 authentication.
type Authentication struct {
	Type     AuthType
	Password Secret
}

// VirtualIP is one address the instance holds while MASTER.
type VirtualIP struct {
	// Prefix is the address with its prefix length (/32 or /128 when the
	// configuration gave none). Prefix.Addr() is the virtual address.
	Prefix netip.Prefix
	// Device is the interface the address is added to (defaults to the
	// instance's interface).
	Device string
	// Label is the IPv4 address label ("eth0:vip"), or empty.
	Label  string
	Source hcl.Range
}

// GARP controls gratuitous ARP (IPv4) and unsolicited neighbour
// advertisements (IPv6) sent on becoming MASTER.
type GARP struct {
	Delay  time.Duration
	Repeat int
	// RefreshInterval repeats the announcements while MASTER; 0 means never.
	RefreshInterval time.Duration
}

// Track is one tracked object of a VRRP instance. Weight is added to the
// priority while the object is failing when negative, while it is healthy
// when positive; 0 puts the instance into FAULT while the object fails.
type Track struct {
	Name   string
	Weight int
	Source hcl.Range
}

// VRRPScript is a vrrp_script block: a program run every Interval whose exit status (0 is
// success) tracks instances that name it in track_script, as keepalived's vrrp_script.
type VRRPScript struct {
	Name string
	// Command is the program and its arguments, run without a shell.
	Command []string
	// User, if set, runs it as that user (a name or a numeric uid).
	User     string
	Interval time.Duration
	// Timeout bounds a run; a run that outlasts it fails (and its process group is killed).
	Timeout time.Duration
	// Rise and Fall are the successes and failures in a row that change its state.
	Rise, Fall int
	// Weight is the default weight of track_script blocks that name it.
	Weight int
	Source hcl.Range
}

// ServiceKind says which kind of block a tracked service names.
type ServiceKind string

// Service kinds.
const (
	ServiceVirtualServer ServiceKind = "virtual_server"
	ServiceProxy         ServiceKind = "proxy"
)

// TrackedService is a virtual_server or proxy tracked by a VRRP instance.
type TrackedService struct {
	Name   string
	Kind   ServiceKind
	Weight int
	Source hcl.Range
}

// Notify holds the commands run on state changes. Each command is an argv
// whose first element is an absolute path; a nil slice means no command.
type Notify struct {
	Master  []string
	Backup  []string
	Fault   []string
	Stop    []string
	Timeout time.Duration
}

// SyncGroup makes VRRP instances change state together.
type SyncGroup struct {
	Name      string
	Instances []string
	Source    hcl.Range
}

// Protocol is an IPVS service protocol.
type Protocol string

// IPVS protocols.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// Scheduler is an IPVS scheduler (ipvsadm -s).
type Scheduler string

// IPVS schedulers.
const (
	SchedRoundRobin             Scheduler = "rr"
	SchedWeightedRoundRobin     Scheduler = "wrr"
	SchedLeastConn              Scheduler = "lc"
	SchedWeightedLeastConn      Scheduler = "wlc"
	SchedLocalityLeastConn      Scheduler = "lblc"
	SchedLocalityLeastConnRepl  Scheduler = "lblcr"
	SchedDestinationHash        Scheduler = "dh"
	SchedSourceHash             Scheduler = "sh"
	SchedShortestExpectedDelay  Scheduler = "sed"
	SchedNeverQueue             Scheduler = "nq"
	SchedWeightedFailover       Scheduler = "fo"
	SchedWeightedOverflow       Scheduler = "ovf"
	SchedMaglevHash             Scheduler = "mh"
	SchedWeightedRandomTwoOfTwo Scheduler = "twos"
)

// SchedulerFlag is an IPVS scheduler flag (ipvsadm -b).
type SchedulerFlag string

// IPVS scheduler flags; sh-* apply to the sh scheduler, mh-* to mh.
const (
	FlagSHFallback SchedulerFlag = "sh-fallback"
	FlagSHPort     SchedulerFlag = "sh-port"
	FlagMHFallback SchedulerFlag = "mh-fallback"
	FlagMHPort     SchedulerFlag = "mh-port"
)

// ForwardingMethod is how IPVS forwards packets to a real server.
type ForwardingMethod string

// IPVS forwarding methods (ipvsadm -m, -g, -i).
const (
	ForwardNAT    ForwardingMethod = "nat"
	ForwardDirect ForwardingMethod = "dr"
	ForwardTunnel ForwardingMethod = "tunnel"
)

// FailureAction is what happens to a real server whose health checks fail.
type FailureAction string

// Failure actions.
const (
	// FailureDrain sets the weight to 0: no new connections, existing ones
	// continue.
	FailureDrain FailureAction = "drain"
	// FailureRemove deletes the destination from the service.
	FailureRemove FailureAction = "remove"
)

// VirtualServer is one IPVS service: virtual_server "NAME" { ... }.
type VirtualServer struct {
	Name   string
	Source hcl.Range

	Family AddressFamily
	// Address is the service address; invalid (zero) when FWMark is set.
	Address netip.AddrPort
	// FWMark is the firewall mark of a fwmark service; 0 when Address is set.
	FWMark uint32
	// Protocol is empty for fwmark services.
	Protocol       Protocol
	Scheduler      Scheduler
	SchedulerFlags []SchedulerFlag
	Forwarding     ForwardingMethod
	// Persistence is nil when connections are not persistent.
	Persistence *Persistence
	// Quorum is nil when the service has no quorum.
	Quorum *Quorum
	// SorryServer is invalid (zero) when there is none.
	SorryServer netip.AddrPort
	OnFailure   FailureAction
	SlowStart   time.Duration
	// RemoveOnShutdown deletes the service from the kernel when the agent
	// stops; by default it stays, so traffic keeps flowing across a restart.
	RemoveOnShutdown bool

	RealServers  []RealServer
	HealthChecks []HealthCheck
}

// Persistence makes IPVS send a client to the same real server.
type Persistence struct {
	Timeout time.Duration
	// PrefixLength is the client address granularity (ipvsadm -M as a prefix
	// length): 32 or 128 means per client address.
	PrefixLength int
}

// Quorum is the number of healthy real servers a virtual server needs to
// count as up (for track_service and the sorry server).
type Quorum struct {
	MinUp      int
	Hysteresis int
}

// RealServer is one IPVS destination.
type RealServer struct {
	Name    string
	Address netip.AddrPort
	Weight  int
	// Forwarding is the effective method: the real server's own, or the
	// virtual server's.
	Forwarding ForwardingMethod
	// UpperThreshold and LowerThreshold are connection thresholds; 0 means
	// none.
	UpperThreshold uint32
	LowerThreshold uint32
	Source         hcl.Range
}

// CheckType is a health check type.
type CheckType string

// Health check types.
const (
	CheckTCP   CheckType = "tcp"
	CheckHTTP  CheckType = "http"
	CheckHTTPS CheckType = "https"
	CheckUDP   CheckType = "udp"
	CheckDNS   CheckType = "dns"
	CheckExec  CheckType = "exec"
)

// CheckState is the state of a checked target.
type CheckState string

// Check states.
const (
	StateUp   CheckState = "up"
	StateDown CheckState = "down"
)

// HealthCheck is one active health check. Exactly one of HTTP, Payload, DNS
// and Exec is set, according to Type.
type HealthCheck struct {
	Type   CheckType
	Source hcl.Range

	Interval     time.Duration
	Timeout      time.Duration
	Rise         int
	Fall         int
	InitialState CheckState

	// CheckAddress and CheckPort override the target's address and port;
	// zero means the target's own.
	CheckAddress netip.Addr
	CheckPort    uint16
	// SourceAddress is the local address checks are sent from; zero means
	// the kernel's choice.
	SourceAddress netip.Addr
	// SOMark is the SO_MARK of the check's socket; 0 means none.
	SOMark uint32

	HTTP    *HTTPCheck    // http and https
	Payload *PayloadCheck // tcp and udp
	DNS     *DNSCheck     // dns
	Exec    *ExecCheck    // exec
}

// HTTPCheck is the http/https part of a health check.
type HTTPCheck struct {
	Path         string
	Method       string
	Host         string
	SNI          string
	ExpectStatus []StatusRange
	// ExpectBody is nil when the body is not checked.
	ExpectBody *regexp.Regexp
	VerifyTLS  bool
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// Contains reports whether code is in r.
func (r StatusRange) Contains(code int) bool { return code >= r.Min && code <= r.Max }

// PayloadCheck is the tcp/udp part of a health check.
type PayloadCheck struct {
	// Send is written after connecting; empty sends nothing (tcp) or an
	// empty datagram (udp).
	Send string
	// Expect must occur in what the target answers; empty accepts any
	// answer (tcp: a completed connect is enough).
	Expect string
}

// DNSCheck is the dns part of a health check.
type DNSCheck struct {
	QueryName    string
	QueryType    string
	ExpectAnswer []string
}

// ExecCheck is the exec part of a health check.
type ExecCheck struct {
	Command       []string
	User          string
	DynamicWeight bool
}

// Proxy is one layer-7 (HTTP) proxy: proxy "NAME" { ... }.
type Proxy struct {
	Name   string
	Source hcl.Range

	Listeners []Listener
	Backends  []Backend
	// DefaultBackend names the backend for requests no route matches.
	DefaultBackend string
	Routes         []Route
	// RateLimit is nil when requests are not rate limited.
	RateLimit *RateLimit
	// MaxConnections is the limit of concurrent client connections; 0 means
	// no limit.
	MaxConnections int
	Timeouts       Timeouts
	// MaxBodySize is in bytes; 0 means no limit.
	MaxBodySize   int64
	MaxHeaderSize int64
	// Stats is nil when the stats page is off.
	Stats   *Stats
	Headers Headers
	// ResponseHeaders edits responses sent to clients.
	ResponseHeaders Headers
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto are kept; from anyone else they are replaced.
	// Prefixes are masked (no host bits).
	TrustedProxies []netip.Prefix
	// Retries is how many other servers a request is retried on after a
	// connection failure; 0 means no retry.
	Retries int
	// AccessLog logs one record per request to the agent's log.
	AccessLog bool
	// StickyKey signs sticky cookies. It is one key per node: every proxy
	// that sets it sets the same value. Unset means a random key per
	// agent start.
	StickyKey Secret
}

// Listener is one address a proxy accepts connections on.
type Listener struct {
	Name    string
	Address netip.AddrPort
	// TLS is nil for plain HTTP.
	TLS *ListenerTLS
	// RedirectHTTPS is the status code (301, 302, 307 or 308) of the redirect
	// to https sent for every request; 0 means no redirect.
	RedirectHTTPS int
	ProxyProtocol bool
	// H2C accepts HTTP/2 with prior knowledge (cleartext); plain
	// listeners only.
	H2C    bool
	Source hcl.Range
}

// ListenerTLS terminates TLS on a listener.
type ListenerTLS struct {
	Certificates []Certificate
	// MinVersion is a crypto/tls version constant (tls.VersionTLS12 or 13).
	MinVersion uint16
}

// Certificate is a certificate and key pair, with absolute file paths.
type Certificate struct {
	Name     string
	CertFile string
	KeyFile  string
	// OCSPFile is empty when no OCSP response is stapled.
	OCSPFile string
	Source   hcl.Range
}

// BalanceMethod is how a proxy backend chooses a server.
type BalanceMethod string

// Balance methods (HAProxy's balance keyword).
const (
	BalanceRoundRobin BalanceMethod = "roundrobin"
	BalanceLeastConn  BalanceMethod = "leastconn"
	BalanceSource     BalanceMethod = "source"
)

// Backend is a group of servers behind a proxy.
type Backend struct {
	Name         string
	Balance      BalanceMethod
	Servers      []BackendServer
	HealthChecks []HealthCheck
	// Sticky is nil when sessions are not sticky.
	Sticky      *Sticky
	MaxFails    int
	FailTimeout time.Duration
	// SendProxyProtocol is the PROXY protocol version (1 or 2) sent to the
	// servers on every connection; 0 sends none.
	SendProxyProtocol int
	Source            hcl.Range
}

// BackendServer is one server of a proxy backend.
type BackendServer struct {
	Name    string
	Address netip.AddrPort
	Weight  int
	Source  hcl.Range
}

// Sticky keeps a client on one server, by cookie or by client address.
type Sticky struct {
	Cookie string
	IPHash bool
}

// Route sends matching requests to a backend. Routes are tried in order;
// empty Host or PathPrefix matches anything.
type Route struct {
	Host       string
	PathPrefix string
	Backend    string
	Source     hcl.Range
}

// RateLimit limits requests and connections per client address.
type RateLimit struct {
	// Requests per Per; 0 means requests are not limited (only
	// connections are).
	Requests int
	Per      time.Duration
	// MaxConnectionsPerClient limits concurrent connections per client
	// address; 0 means no limit.
	MaxConnectionsPerClient int
	// MaxClients bounds the number of client addresses tracked.
	MaxClients int
}

// Timeouts of a proxy.
type Timeouts struct {
	Connect time.Duration
	Client  time.Duration
	Server  time.Duration
	Idle    time.Duration
	Header  time.Duration
}

// Stats is the proxy's statistics page.
type Stats struct {
	Path     string
	Username string
	Password Secret
	Refresh  time.Duration
}

// Headers edits the headers of requests sent to backends (Proxy.Headers) or
// of responses sent to clients (Proxy.ResponseHeaders).
type Headers struct {
	Set    map[string]string
	Delete []string
}
