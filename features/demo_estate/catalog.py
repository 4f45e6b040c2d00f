"""What a securities firm's estate is made of, and how its operations team writes things down.

Each ``Kind`` is a family of systems (exchange gateways, market-data feeds, ...) with its place
in the dependency graph (``layer`` and the kinds it may depend on), its criticality, the shape
of its daily load, and how prone it is to each failure mechanism. The text templates are the
case library's voice: titles, root causes and remediations as an on-call engineer files them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    prefix: str
    name: str
    category: str
    owner: str
    layer: int
    tiers: tuple[float, float, float, float]  # probability of tier 1..4
    load: str  # key of LOAD_SHAPES
    upstream: tuple[str, ...]  # prefixes it may depend on
    weight: float  # share of the estate
    trading_facing: bool = False  # hurt by the first session after a long break
    leak_prone: float = 0.2  # share of systems of this kind that run leaky software
    disk_growth: float = 0.3  # typical % of disk filled per day (before cleanups)


KINDS: tuple[Kind, ...] = (
    Kind("NET", "core network", "infrastructure", "network-ops", 0, (0.6, 0.3, 0.1, 0.0),
         "infra", (), 0.05, leak_prone=0.0, disk_growth=0.05),
    Kind("STO", "storage array", "infrastructure", "storage-ops", 0, (0.5, 0.4, 0.1, 0.0),
         "infra", (), 0.04, leak_prone=0.0, disk_growth=0.5),
    Kind("DB", "database cluster", "database", "dba", 1, (0.5, 0.4, 0.1, 0.0),
         "post_trade", ("STO", "NET"), 0.09, leak_prone=0.1, disk_growth=0.6),
    Kind("MQ", "message bus", "middleware", "middleware-ops", 1, (0.5, 0.4, 0.1, 0.0),
         "trading", ("NET", "STO"), 0.05, leak_prone=0.3, disk_growth=0.4),
    Kind("IAM", "directory and auth", "infrastructure", "security-ops", 1, (0.3, 0.5, 0.2, 0.0),
         "client", ("NET", "DB"), 0.03, leak_prone=0.2, disk_growth=0.1),
    Kind("MDF", "market data feed handler", "market-data", "market-data", 2,
         (0.7, 0.3, 0.0, 0.0), "trading", ("NET", "MQ"), 0.08, trading_facing=True,
         leak_prone=0.35, disk_growth=0.5),
    Kind("REF", "reference data service", "market-data", "market-data", 2,
         (0.3, 0.5, 0.2, 0.0), "post_trade", ("DB", "MQ"), 0.04, trading_facing=True),
    Kind("OMS", "order management system", "trading", "trading-tech", 3, (0.8, 0.2, 0.0, 0.0),
         "trading", ("DB", "MQ", "REF", "MDF", "IAM"), 0.09, trading_facing=True,
         leak_prone=0.35),
    Kind("GW", "exchange gateway", "trading", "trading-tech", 3, (0.9, 0.1, 0.0, 0.0),
         "trading", ("NET", "MQ", "OMS"), 0.08, trading_facing=True, leak_prone=0.25),
    Kind("RSK", "pre-trade risk engine", "risk", "risk-tech", 3, (0.7, 0.3, 0.0, 0.0),
         "trading", ("DB", "MQ", "REF", "MDF"), 0.06, trading_facing=True, leak_prone=0.3),
    Kind("ALG", "algorithmic execution engine", "trading", "trading-tech", 4,
         (0.4, 0.5, 0.1, 0.0), "trading", ("OMS", "MDF", "RSK"), 0.04, trading_facing=True,
         leak_prone=0.35),
    Kind("CLR", "clearing system", "post-trade", "ops-tech", 4, (0.5, 0.4, 0.1, 0.0),
         "post_trade", ("DB", "MQ", "OMS", "REF"), 0.06, disk_growth=0.6),
    Kind("STL", "settlement system", "post-trade", "ops-tech", 5, (0.4, 0.5, 0.1, 0.0),
         "post_trade", ("DB", "CLR", "MQ"), 0.05, disk_growth=0.6),
    Kind("REC", "reconciliation service", "post-trade", "ops-tech", 5, (0.1, 0.4, 0.4, 0.1),
         "post_trade", ("DB", "STL", "CLR"), 0.04, disk_growth=0.7),
    Kind("RPT", "regulatory reporting", "reporting", "finance-tech", 6, (0.1, 0.4, 0.4, 0.1),
         "post_trade", ("DB", "STL", "REC"), 0.04, disk_growth=0.8),
    Kind("WEB", "web trading portal", "client-channel", "digital", 4, (0.5, 0.4, 0.1, 0.0),
         "client", ("IAM", "OMS", "MDF"), 0.05, trading_facing=True, leak_prone=0.3),
    Kind("MOB", "mobile trading backend", "client-channel", "digital", 4,
         (0.5, 0.4, 0.1, 0.0), "client", ("IAM", "OMS", "MDF"), 0.05, trading_facing=True,
         leak_prone=0.3),
    Kind("API", "open trading API", "client-channel", "digital", 4, (0.3, 0.5, 0.2, 0.0),
         "client", ("IAM", "OMS", "GW"), 0.03, trading_facing=True, leak_prone=0.3),
    Kind("CRM", "client service CRM", "client-channel", "digital", 2, (0.0, 0.3, 0.5, 0.2),
         "client", ("DB", "IAM"), 0.03),
)

DATACENTERS = ("SH-DC1", "SH-DC2", "SZ-DR")
PLATFORMS = ("linux-java", "linux-cpp", "linux-python", "windows-dotnet", "appliance")

# Metrics a collector reports for every system. The first twelve are the default demo set.
METRICS: tuple[str, ...] = (
    "cpu_pct",
    "mem_pct",
    "disk_pct",
    "latency_ms",
    "error_rate",
    "throughput",
    "queue_depth",
    "conn_count",
    "gc_pause_ms",
    "io_wait_pct",
    "net_in_mbps",
    "net_out_mbps",
    "thread_count",
    "heap_pct",
    "swap_pct",
    "tcp_retrans_pct",
    "db_lock_waits",
    "msg_lag_ms",
    "fd_used_pct",
    "cpu_temp_c",
)

# Failure mechanisms: the category the case library files them under, and severity odds.
MECHANISMS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "capacity": ("Capacity", (0.06, 0.24, 0.40, 0.30)),
    "leak": ("Software", (0.04, 0.22, 0.44, 0.30)),
    "latency": ("Performance", (0.03, 0.17, 0.45, 0.35)),
    "storm": ("Application", (0.03, 0.17, 0.40, 0.40)),
    "change": ("Change", (0.05, 0.20, 0.40, 0.35)),
    "reopen": ("Operations", (0.06, 0.24, 0.40, 0.30)),
    "cascade": ("Dependency", (0.02, 0.15, 0.43, 0.40)),
    "hardware": ("Hardware", (0.05, 0.20, 0.40, 0.35)),
    "exhaustion": ("Application", (0.04, 0.21, 0.45, 0.30)),
    "random": ("", (0.02, 0.10, 0.33, 0.55)),
}
RANDOM_CATEGORIES = ("Hardware", "Network", "Software", "Human Error", "Vendor", "Data", "Security")

# (title, root cause, remediation) per mechanism. Placeholders: {sys} system id, {name} the
# kind's name, {chg} a change id, {up} an upstream system id, {v} a release number.
TEXTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "capacity": (
        ("{sys} /data filesystem 100% full, writes failing",
         "Log rotation disabled by OS patch; debug logging left on after last release grew the volume ~2% a day",
         "Purged logs older than 7d, re-enabled logrotate, lowered disk alert from 98% to 85%"),
        ("{sys} archive volume exhausted, DB switched to read-only",
         "Purge job for >90d trade partitions failing silently since month end; growth not on capacity review",
         "Extended LV by 500GB, fixed purge job, added archive volume to weekly capacity forecast"),
        ("{sys} journal disk full, {name} stopped accepting messages",
         "Consumer lag let journal segments pile up; retention by size not configured",
         "Set retention.bytes, moved journal to larger volume, alert on 7-day disk trend"),
        ("{sys} core dumps filled /var, services failed to restart",
         "Crash-looping worker wrote a 20GB core on every restart",
         "Disabled core dumps on prod hosts, fixed worker crash, cleaned /var"),
    ),
    "leak": (
        ("{sys} OOM-killed during trading session",
         "Memory leak in session cache introduced in release {v}; idle sessions never evicted",
         "Rolling restart; hotfix {v}.1 evicts idle sessions; heap trend alert added"),
        ("{sys} JVM heap exhausted, order acks delayed by full GC",
         "Unbounded cache of instrument snapshots grows with every reconnect",
         "Restarted nodes, bounded cache to 50k entries, GC pause alert at 500ms"),
        ("{sys} unresponsive: file descriptor leak exhausted handles",
         "Subscriber leaked a socket on every market-data reconnect",
         "Restarted service, vendor patch applied, fd usage alert at 80%"),
        ("{sys} swap thrashing, response times x20",
         "Native memory leak in compression library used by {name}",
         "Downgraded library, nightly restart until vendor fix, added swap alert"),
    ),
    "latency": (
        ("{sys} order latency above SLA, p99 over 800ms",
         "Index fragmentation on orders table after bulk load; queries fell back to full scans",
         "Rebuilt indexes, refreshed statistics, latency trend alert on 5-day slope"),
        ("{sys} slow responses, client orders timing out",
         "Lock contention on position table from new intraday report",
         "Moved report to replica, added lock wait monitoring"),
        ("{sys} end-of-day batch overran by 2h",
         "Query plan regression after statistics refresh; nested loops on 40M-row join",
         "Pinned plan, scheduled stats refresh off-hours, batch runtime alert"),
        ("{sys} latency spikes, TCP retransmits on uplink",
         "Degrading SFP on top-of-rack uplink causing packet loss",
         "Failed over to secondary uplink, replaced optic"),
    ),
    "storm": (
        ("{sys} error storm: thousands of rejects per minute",
         "Retry loop without backoff after counterparty endpoint returned 503; amplification overloaded {name}",
         "Added exponential backoff and circuit breaker; rate limit on retries"),
        ("{sys} post-market batch failed after repeated errors",
         "Malformed file from upstream caused parse errors and reprocessing loop",
         "Quarantined bad file, added schema check before load"),
        ("{sys} reconnect loop, sessions flapping",
         "Heartbeat interval mismatch after counterparty config change",
         "Aligned heartbeat settings, alert on reconnect rate"),
    ),
    "change": (
        ("{sys} failed to start after change {chg}",
         "Change {chg} shipped config with wrong listener port; not caught in UAT",
         "Rolled back {chg}; config diff check added to deployment pipeline"),
        ("{sys} degraded after release {chg}, rolled back",
         "Release {chg} missing DB migration script; new code hit missing column",
         "Rolled back {chg}, migration added to release checklist"),
        ("{sys} outage during maintenance {chg} overran",
         "Patch {chg} incompatible with monitoring agent; host hung on reboot",
         "Console reboot, agent upgraded, vendor compatibility matrix checked before patching"),
        ("{sys} connectivity lost after network change {chg}",
         "ACL change {chg} removed rule for {name} subnet",
         "Restored ACL, peer review made mandatory for firewall changes"),
    ),
    "reopen": (
        ("{sys} failed to resume after holiday: sequence number mismatch",
         "Exchange reset session sequence numbers over the holiday; {name} expected continuation",
         "Manual sequence reset; holiday runbook step added"),
        ("{sys} stale data on first session after holiday",
         "Holiday calendar not loaded into reference data; instruments flagged suspended",
         "Reloaded calendar, added pre-open data completeness check"),
        ("{sys} TLS handshake failures at open after long closure",
         "Certificate expired during the holiday; renewal reminder went to a departed engineer",
         "Renewed certificate, certificate expiry monitoring with team mailbox"),
    ),
    "cascade": (
        ("{sys} impacted by {up} outage",
         "Upstream dependency {up} unavailable; {name} has no circuit breaker and exhausted threads waiting",
         "Recovered after {up} restored; timeouts and circuit breaker added"),
        ("{sys} queue backlog after {up} failure",
         "{up} incident stalled consumers; backlog took hours to drain",
         "Drained backlog, added consumer lag alert"),
    ),
    "hardware": (
        ("{sys} host crashed: uncorrectable memory error",
         "DIMM ECC errors escalated to uncorrectable; kernel panic",
         "Failed over to standby, DIMM replaced by vendor"),
        ("{sys} disk controller failure, failover to standby",
         "RAID controller cache battery failed; write-through mode then controller reset",
         "Controller replaced, battery health check added to monitoring"),
        ("{sys} node overheated and shut down",
         "Failed fan in chassis; inlet temperature alarms not routed to on-call",
         "Fan replaced, temperature alarms routed to NOC"),
    ),
    "exhaustion": (
        ("{sys} connection pool exhausted, new sessions refused",
         "Connections opened on error paths were never returned; the pool filled over days",
         "Restarted {name}, fixed the connection leak, alert on the connection-count trend"),
        ("{sys} thread pool saturated, requests queued until timeout",
         "Worker threads blocked on a downstream call without timeout and were never released",
         "Rolling restart, timeouts on downstream calls, thread-count alert at 80% of the pool"),
    ),
    "random": (
        ("{sys} service stopped unexpectedly",
         "Unhandled exception on rare message type; process exited",
         "Restarted, defect logged with development"),
        ("{sys} brief network partition",
         "Spanning-tree reconvergence after unrelated switch maintenance",
         "No action; vendor case opened"),
        ("{sys} wrong parameters loaded by operator",
         "Operator ran load script against prod instead of UAT",
         "Restored parameters from backup, four-eyes check on manual loads"),
        ("{sys} vendor feed delivered corrupt file",
         "Vendor-side defect in daily file generation",
         "Requested redelivery, checksum validation added"),
        ("{sys} certificate chain rejected by counterparty",
         "Intermediate CA rotated by counterparty without notice",
         "Installed new chain, subscribed to counterparty notices"),
        ("{sys} scheduled job missed its window",
         "Scheduler agent lost connection to master after DNS change",
         "Restarted agent, DNS TTL reviewed"),
    ),
}

# Each change type: its description and the odds of a low, medium or high risk level.
CHANGE_TYPES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "restart": ("Scheduled restart of {sys}", (0.85, 0.15, 0.0)),
    "os_patch": ("Monthly OS security patching on {sys}", (0.5, 0.45, 0.05)),
    "db_maintenance": ("Index rebuild and statistics refresh on {sys}", (0.4, 0.5, 0.1)),
    "cleanup": ("Archive and purge old data on {sys}", (0.8, 0.2, 0.0)),
    "config": ("Configuration change on {sys}", (0.4, 0.5, 0.1)),
    "release": ("Application release {v} of {sys}", (0.1, 0.55, 0.35)),
    "network": ("Network change affecting {sys}", (0.2, 0.5, 0.3)),
    "hardware": ("Hardware replacement on {sys}", (0.3, 0.5, 0.2)),
}

LOAD_SHAPES = ("trading", "post_trade", "client", "infra")
