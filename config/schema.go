package config

import "github.com/hashicorp/hcl/v2"

// This file is the HCL schema: the structs gohcl decodes blocks into. Every
// attribute is a *hcl.Attribute (nil when absent) so that the decoder can
// convert it with precise positions and operator-friendly errors; gohcl
// checks the structure (unknown arguments and block types with "Did you
// mean" hints, labels, duplicated singleton blocks).
//
// The docs test walks fileSchema by reflection and requires every block
// and attribute name here to be described in docs/config.md.

// fileSchema is the complete schema of a file. Decoding goes through
// fileHeader instead, so that the body of a block whose feature the binary
// does not support is never decoded; TestFileHeaderMatchesSchema keeps the
// two in step.
type fileSchema struct {
	Node           nodeBlock            `hcl:"node,block"`
	Control        *controlBlock        `hcl:"control,block"`
	Metrics        *metricsBlock        `hcl:"metrics,block"`
	Log            *logBlock            `hcl:"log,block"`
	VRRPScripts    []vrrpScriptBlock    `hcl:"vrrp_script,block"`
	VRRPInstances  []vrrpInstanceBlock  `hcl:"vrrp_instance,block"`
	SyncGroups     []syncGroupBlock     `hcl:"sync_group,block"`
	VirtualServers []virtualServerBlock `hcl:"virtual_server,block"`
	Proxies        []proxyBlock         `hcl:"proxy,block"`
}

// fileHeader is the first decoding pass: the node-wide blocks fully, the
// feature blocks only as name and body.
type fileHeader struct {
	Node           nodeBlock      `hcl:"node,block"`
	Control        *controlBlock  `hcl:"control,block"`
	Metrics        *metricsBlock  `hcl:"metrics,block"`
	Log            *logBlock      `hcl:"log,block"`
	VRRPScripts    []featureBlock `hcl:"vrrp_script,block"`
	VRRPInstances  []featureBlock `hcl:"vrrp_instance,block"`
	SyncGroups     []featureBlock `hcl:"sync_group,block"`
	VirtualServers []featureBlock `hcl:"virtual_server,block"`
	Proxies        []featureBlock `hcl:"proxy,block"`
}

// featureBlock is a top-level feature block before its body is decoded.
type featureBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`
	Body      hcl.Body  `hcl:",remain"`
}

// header is the label and positions every named block carries.
type header struct {
	Name      string
	NameRange hcl.Range
	DefRange  hcl.Range
}

func (f featureBlock) header() header {
	return header{Name: f.Name, NameRange: f.NameRange, DefRange: f.DefRange}
}

type nodeBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Interfaces *hcl.Attribute `hcl:"interfaces,optional"`
	Addresses  *hcl.Attribute `hcl:"addresses,optional"`
}

type controlBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Socket   *hcl.Attribute `hcl:"socket,optional"`
}

type metricsBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Listen   *hcl.Attribute `hcl:"listen,optional"`
	Path     *hcl.Attribute `hcl:"path,optional"`
}

type logBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Level    *hcl.Attribute `hcl:"level,optional"`
	Target   *hcl.Attribute `hcl:"target,optional"`
}

// ---- VRRP ------------------------------------------------------------------

type vrrpInstanceBlock struct {
	Interface          *hcl.Attribute `hcl:"interface,optional"`
	VirtualRouterID    *hcl.Attribute `hcl:"virtual_router_id,optional"`
	Priority           *hcl.Attribute `hcl:"priority,optional"`
	AdvertInterval     *hcl.Attribute `hcl:"advert_interval,optional"`
	Version            *hcl.Attribute `hcl:"version,optional"`
	Preempt            *hcl.Attribute `hcl:"preempt,optional"`
	PreemptDelay       *hcl.Attribute `hcl:"preempt_delay,optional"`
	VirtualIPs         *hcl.Attribute `hcl:"virtual_ips,optional"`
	AcceptV2Checksum   *hcl.Attribute `hcl:"accept_v2_checksum,optional"`
	KeepVIPsOnShutdown *hcl.Attribute `hcl:"keep_vips_on_shutdown,optional"`

	Unicast         *unicastBlock    `hcl:"unicast,block"`
	Authentication  *authBlock       `hcl:"authentication,block"`
	VirtualIPBlocks []virtualIPBlock `hcl:"virtual_ip,block"`
	GARP            *garpBlock       `hcl:"garp,block"`
	TrackInterfaces []trackBlock     `hcl:"track_interface,block"`
	TrackProcesses  []trackBlock     `hcl:"track_process,block"`
	TrackFiles      []trackFileBlock `hcl:"track_file,block"`
	TrackServices   []trackBlock     `hcl:"track_service,block"`
	TrackScripts    []trackBlock     `hcl:"track_script,block"`
	Notify          *notifyBlock     `hcl:"notify,block"`
}

// vrrpScriptBlock is a vrrp_script "NAME" block (keepalived vrrp_script).
type vrrpScriptBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Command  *hcl.Attribute `hcl:"command,optional"`
	User     *hcl.Attribute `hcl:"user,optional"`
	Interval *hcl.Attribute `hcl:"interval,optional"`
	Timeout  *hcl.Attribute `hcl:"timeout,optional"`
	Rise     *hcl.Attribute `hcl:"rise,optional"`
	Fall     *hcl.Attribute `hcl:"fall,optional"`
	Weight   *hcl.Attribute `hcl:"weight,optional"`
}

type unicastBlock struct {
	DefRange      hcl.Range      `hcl:",def_range"`
	SourceAddress *hcl.Attribute `hcl:"source_address,optional"`
	Peers         *hcl.Attribute `hcl:"peers,optional"`
	RelaxTTL      *hcl.Attribute `hcl:"relax_ttl,optional"`
}

type authBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Type     *hcl.Attribute `hcl:"type,optional"`
	Password *hcl.Attribute `hcl:"password,optional"`
}

type virtualIPBlock struct {
	Address      string         `hcl:"address,label"`
	AddressRange hcl.Range      `hcl:"address,label_range"`
	DefRange     hcl.Range      `hcl:",def_range"`
	Device       *hcl.Attribute `hcl:"device,optional"`
	Label        *hcl.Attribute `hcl:"label,optional"`
}

type garpBlock struct {
	DefRange        hcl.Range      `hcl:",def_range"`
	Delay           *hcl.Attribute `hcl:"delay,optional"`
	Repeat          *hcl.Attribute `hcl:"repeat,optional"`
	RefreshInterval *hcl.Attribute `hcl:"refresh_interval,optional"`
}

type trackBlock struct {
	Name      string         `hcl:"name,label"`
	NameRange hcl.Range      `hcl:"name,label_range"`
	DefRange  hcl.Range      `hcl:",def_range"`
	Weight    *hcl.Attribute `hcl:"weight,optional"`
}

type trackFileBlock struct {
	Path      string         `hcl:"path,label"`
	PathRange hcl.Range      `hcl:"path,label_range"`
	DefRange  hcl.Range      `hcl:",def_range"`
	Weight    *hcl.Attribute `hcl:"weight,optional"`
}

type notifyBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Master   *hcl.Attribute `hcl:"master,optional"`
	Backup   *hcl.Attribute `hcl:"backup,optional"`
	Fault    *hcl.Attribute `hcl:"fault,optional"`
	Stop     *hcl.Attribute `hcl:"stop,optional"`
	Timeout  *hcl.Attribute `hcl:"timeout,optional"`
}

type syncGroupBlock struct {
	Instances *hcl.Attribute `hcl:"instances,optional"`
}

// ---- IPVS ------------------------------------------------------------------

type virtualServerBlock struct {
	Address          *hcl.Attribute `hcl:"address,optional"`
	FWMark           *hcl.Attribute `hcl:"fwmark,optional"`
	Family           *hcl.Attribute `hcl:"family,optional"`
	Protocol         *hcl.Attribute `hcl:"protocol,optional"`
	Scheduler        *hcl.Attribute `hcl:"scheduler,optional"`
	SchedulerFlags   *hcl.Attribute `hcl:"scheduler_flags,optional"`
	Forwarding       *hcl.Attribute `hcl:"forwarding,optional"`
	SorryServer      *hcl.Attribute `hcl:"sorry_server,optional"`
	OnFailure        *hcl.Attribute `hcl:"on_failure,optional"`
	SlowStart        *hcl.Attribute `hcl:"slow_start,optional"`
	RemoveOnShutdown *hcl.Attribute `hcl:"remove_on_shutdown,optional"`

	Persistence  *persistenceBlock  `hcl:"persistence,block"`
	Quorum       *quorumBlock       `hcl:"quorum,block"`
	RealServers  []realServerBlock  `hcl:"real_server,block"`
	HealthChecks []healthCheckBlock `hcl:"health_check,block"`
}

type persistenceBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Timeout  *hcl.Attribute `hcl:"timeout,optional"`
	Netmask  *hcl.Attribute `hcl:"netmask,optional"`
}

type quorumBlock struct {
	DefRange   hcl.Range      `hcl:",def_range"`
	MinUp      *hcl.Attribute `hcl:"min_up,optional"`
	Hysteresis *hcl.Attribute `hcl:"hysteresis,optional"`
}

type realServerBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Address        *hcl.Attribute `hcl:"address,optional"`
	Weight         *hcl.Attribute `hcl:"weight,optional"`
	Forwarding     *hcl.Attribute `hcl:"forwarding,optional"`
	UpperThreshold *hcl.Attribute `hcl:"upper_threshold,optional"`
	LowerThreshold *hcl.Attribute `hcl:"lower_threshold,optional"`
}

// healthCheckBlock is shared by virtual servers and proxy backends. Which
// attributes are valid depends on the type label (see checkAttrAllowed).
type healthCheckBlock struct {
	Type      string    `hcl:"type,label"`
	TypeRange hcl.Range `hcl:"type,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Interval     *hcl.Attribute `hcl:"interval,optional"`
	Timeout      *hcl.Attribute `hcl:"timeout,optional"`
	Rise         *hcl.Attribute `hcl:"rise,optional"`
	Fall         *hcl.Attribute `hcl:"fall,optional"`
	InitialState *hcl.Attribute `hcl:"initial_state,optional"`

	CheckAddress  *hcl.Attribute `hcl:"check_address,optional"`
	CheckPort     *hcl.Attribute `hcl:"check_port,optional"`
	SourceAddress *hcl.Attribute `hcl:"source_address,optional"`
	SOMark        *hcl.Attribute `hcl:"so_mark,optional"`

	Path         *hcl.Attribute `hcl:"path,optional"`
	Method       *hcl.Attribute `hcl:"method,optional"`
	Host         *hcl.Attribute `hcl:"host,optional"`
	SNI          *hcl.Attribute `hcl:"sni,optional"`
	ExpectStatus *hcl.Attribute `hcl:"expect_status,optional"`
	ExpectBody   *hcl.Attribute `hcl:"expect_body,optional"`
	VerifyTLS    *hcl.Attribute `hcl:"verify_tls,optional"`

	Payload *hcl.Attribute `hcl:"payload,optional"`
	Expect  *hcl.Attribute `hcl:"expect,optional"`

	QueryName    *hcl.Attribute `hcl:"query_name,optional"`
	QueryType    *hcl.Attribute `hcl:"query_type,optional"`
	ExpectAnswer *hcl.Attribute `hcl:"expect_answer,optional"`

	Command       *hcl.Attribute `hcl:"command,optional"`
	User          *hcl.Attribute `hcl:"user,optional"`
	DynamicWeight *hcl.Attribute `hcl:"dynamic_weight,optional"`
}

// ---- L7 proxy --------------------------------------------------------------

type proxyBlock struct {
	DefaultBackend *hcl.Attribute `hcl:"default_backend,optional"`
	MaxConnections *hcl.Attribute `hcl:"max_connections,optional"`
	MaxBodySize    *hcl.Attribute `hcl:"max_body_size,optional"`
	MaxHeaderSize  *hcl.Attribute `hcl:"max_header_size,optional"`
	TrustedProxies *hcl.Attribute `hcl:"trusted_proxies,optional"`
	Retries        *hcl.Attribute `hcl:"retries,optional"`
	AccessLog      *hcl.Attribute `hcl:"access_log,optional"`
	StickyKey      *hcl.Attribute `hcl:"sticky_key,optional"`

	Listeners       []listenerBlock `hcl:"listener,block"`
	Backends        []backendBlock  `hcl:"backend,block"`
	Routes          []routeBlock    `hcl:"route,block"`
	RateLimit       *rateLimitBlock `hcl:"rate_limit,block"`
	Timeouts        *timeoutsBlock  `hcl:"timeouts,block"`
	Stats           *statsBlock     `hcl:"stats,block"`
	Headers         *headersBlock   `hcl:"headers,block"`
	ResponseHeaders *headersBlock   `hcl:"response_headers,block"`
}

type listenerBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Address       *hcl.Attribute `hcl:"address,optional"`
	RedirectHTTPS *hcl.Attribute `hcl:"redirect_https,optional"`
	ProxyProtocol *hcl.Attribute `hcl:"proxy_protocol,optional"`
	H2C           *hcl.Attribute `hcl:"h2c,optional"`
	TLS           *tlsBlock      `hcl:"tls,block"`
}

type tlsBlock struct {
	DefRange     hcl.Range          `hcl:",def_range"`
	MinVersion   *hcl.Attribute     `hcl:"min_version,optional"`
	Certificates []certificateBlock `hcl:"certificate,block"`
}

type certificateBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	CertFile *hcl.Attribute `hcl:"cert_file,optional"`
	KeyFile  *hcl.Attribute `hcl:"key_file,optional"`
	OCSPFile *hcl.Attribute `hcl:"ocsp_file,optional"`
}

type backendBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Balance           *hcl.Attribute `hcl:"balance,optional"`
	MaxFails          *hcl.Attribute `hcl:"max_fails,optional"`
	FailTimeout       *hcl.Attribute `hcl:"fail_timeout,optional"`
	SendProxyProtocol *hcl.Attribute `hcl:"send_proxy_protocol,optional"`

	Servers      []serverBlock      `hcl:"server,block"`
	HealthChecks []healthCheckBlock `hcl:"health_check,block"`
	Sticky       *stickyBlock       `hcl:"sticky,block"`
}

type serverBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Address *hcl.Attribute `hcl:"address,optional"`
	Weight  *hcl.Attribute `hcl:"weight,optional"`
}

type stickyBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Cookie   *hcl.Attribute `hcl:"cookie,optional"`
	IPHash   *hcl.Attribute `hcl:"ip_hash,optional"`
}

type routeBlock struct {
	DefRange   hcl.Range      `hcl:",def_range"`
	Host       *hcl.Attribute `hcl:"host,optional"`
	PathPrefix *hcl.Attribute `hcl:"path_prefix,optional"`
	Backend    *hcl.Attribute `hcl:"backend,optional"`
}

type rateLimitBlock struct {
	DefRange                hcl.Range      `hcl:",def_range"`
	Requests                *hcl.Attribute `hcl:"requests,optional"`
	Per                     *hcl.Attribute `hcl:"per,optional"`
	MaxConnectionsPerClient *hcl.Attribute `hcl:"max_connections_per_client,optional"`
	MaxClients              *hcl.Attribute `hcl:"max_clients,optional"`
}

type timeoutsBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Connect  *hcl.Attribute `hcl:"connect,optional"`
	Client   *hcl.Attribute `hcl:"client,optional"`
	Server   *hcl.Attribute `hcl:"server,optional"`
	Idle     *hcl.Attribute `hcl:"idle,optional"`
	Header   *hcl.Attribute `hcl:"header,optional"`
}

type statsBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Path     *hcl.Attribute `hcl:"path,optional"`
	Username *hcl.Attribute `hcl:"username,optional"`
	Password *hcl.Attribute `hcl:"password,optional"`
	Refresh  *hcl.Attribute `hcl:"refresh,optional"`
}

type headersBlock struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Set      *hcl.Attribute `hcl:"set,optional"`
	Delete   *hcl.Attribute `hcl:"delete,optional"`
}
