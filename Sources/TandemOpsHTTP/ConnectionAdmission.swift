/// Who may hold a connection to the ops port. A pure state machine (time is passed in, decisions are
/// returned); `ConnectionGuard` is the thin shell that feeds it libmicrohttpd's notifications and acts on
/// its decisions.
///
/// The goal (issue 7): idle or slow connections must never keep a health check out. So:
/// - at most `maxPerAddress` connections from one client address (IPv6: one /64), so one client cannot
///   take the whole port — or churn everybody else's connections out; a new connection from an address at
///   its limit closes that address's own connection idle longest (a health checker sharing an address
///   with idle clients — the same host, a NAT — still gets in), and is refused only when every connection
///   of that address is in the middle of a request;
/// - at most `maxConnections` in all; when a new connection arrives at the limit, the connection that
///   has been idle longest is closed to make room ("idle": no request in progress — a slow-loris client
///   still sending its headers counts as idle since it connected). Only when every connection is in the
///   middle of a request (each bounded by the request timeout) is the newcomer refused.
///
/// A request that has been running for longer than `busyEvictableAfterMs` (a client that stopped
/// reading a response) becomes evictable too, after every idle connection.
struct ConnectionAdmission {
    typealias ID = UInt

    struct Limits: Equatable {
        var maxConnections: Int
        var maxPerAddress: Int
        var busyEvictableAfterMs: UInt64
    }

    typealias Refusal = OpsConnectionRefusal

    enum Decision: Equatable {
        case admit
        /// Admit, after closing `victim` (the connection idle longest) to make room.
        case admitEvicting(victim: ID)
        case refuse(Refusal)
    }

    private struct Entry {
        var address: ClientAddressKey
        /// Idle: when the last request finished (or when it connected). Busy: when the request began.
        var since: UInt64
        /// Position in the order of activity (ties of `since` within a millisecond are common).
        var order: UInt64
        var busy = false
        /// Refused or evicted: the socket is being shut down; it no longer counts, and closes soon.
        var closing = false
    }

    let limits: Limits
    private var entries: [ID: Entry] = [:]
    private var perAddress: [ClientAddressKey: Int] = [:]
    private var nextOrder: UInt64 = 0
    /// Connections that count against the limits (open and not closing).
    private(set) var openCount = 0

    init(limits: Limits) {
        self.limits = limits
    }

    /// Connections known to libmicrohttpd, closing ones included (they still hold a socket).
    var trackedCount: Int { entries.count }

    /// Open connections with no request in progress (the ones a newcomer at the limit may evict). Linear;
    /// for tests, which wait for libmicrohttpd's completion notice instead of assuming it came with the
    /// response's last byte.
    var idleCount: Int { entries.values.count { !$0.closing && !$0.busy } }

    /// A new connection from `address`. Every call must be matched by one `closed(id)`, whatever the
    /// decision (refused and evicted connections are still closed by libmicrohttpd later).
    mutating func opened(_ id: ID, address: ClientAddressKey, nowMs: UInt64) -> Decision {
        var entry = Entry(address: address, since: nowMs, order: takeOrder())
        var decision = Decision.admit
        if perAddress[address, default: 0] >= limits.maxPerAddress {
            guard let victim = evictionCandidate(nowMs: nowMs, from: address) else {
                entry.closing = true
                entries[id] = entry
                return .refuse(.perAddress)
            }
            markClosing(victim)
            decision = .admitEvicting(victim: victim)
        } else if openCount >= limits.maxConnections {
            guard let victim = evictionCandidate(nowMs: nowMs) else {
                entry.closing = true
                entries[id] = entry
                return .refuse(.full)
            }
            markClosing(victim)
            decision = .admitEvicting(victim: victim)
        }
        entries[id] = entry
        perAddress[address, default: 0] += 1
        openCount += 1
        return decision
    }

    /// The connection's request headers are in: it is busy until `requestFinished`.
    mutating func requestStarted(_ id: ID, nowMs: UInt64) {
        guard var entry = entries[id] else { return }
        entry.busy = true
        entry.since = nowMs
        entry.order = takeOrder()
        entries[id] = entry
    }

    /// Its response is sent (or the request was abandoned): idle again from now.
    mutating func requestFinished(_ id: ID, nowMs: UInt64) {
        guard var entry = entries[id] else { return }
        entry.busy = false
        entry.since = nowMs
        entry.order = takeOrder()
        entries[id] = entry
    }

    /// libmicrohttpd closed the connection.
    mutating func closed(_ id: ID) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        if !entry.closing { release(entry.address) }
    }

    /// Whether `id` is being shut down (refused or evicted).
    func isClosing(_ id: ID) -> Bool {
        entries[id]?.closing ?? false
    }

    private mutating func takeOrder() -> UInt64 {
        nextOrder += 1  // one per connection event: 2^64 of them cannot happen
        return nextOrder
    }

    /// The idle connection idle longest (of `address`, when given); failing that, the request running
    /// longest past `busyEvictableAfterMs`. Linear in the number of connections, and only run at a limit.
    private func evictionCandidate(nowMs: UInt64, from address: ClientAddressKey? = nil) -> ID? {
        var idle: (id: ID, order: UInt64)?
        var stuck: (id: ID, order: UInt64)?
        for (id, entry) in entries where !entry.closing && (address == nil || entry.address == address) {
            if !entry.busy {
                if idle.map({ entry.order < $0.order }) ?? true { idle = (id, entry.order) }
            } else if nowMs >= entry.since, nowMs - entry.since > limits.busyEvictableAfterMs {
                if stuck.map({ entry.order < $0.order }) ?? true { stuck = (id, entry.order) }
            }
        }
        return idle?.id ?? stuck?.id
    }

    private mutating func markClosing(_ id: ID) {
        guard var entry = entries[id], !entry.closing else { return }
        entry.closing = true
        entries[id] = entry
        release(entry.address)
    }

    private mutating func release(_ address: ClientAddressKey) {
        openCount -= 1
        let remaining = perAddress[address, default: 1] - 1
        perAddress[address] = remaining > 0 ? remaining : nil
    }
}

/// The part of a client address that the per-address limit counts: the IPv4 address, or the /64
/// network of an IPv6 address (one customer or host usually holds a whole /64, so counting single IPv6
/// addresses would be no limit at all). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack
/// socket reports for IPv4 clients) count as their IPv4 address.
struct ClientAddressKey: Hashable, Sendable, CustomStringConvertible {
    private let bytes: [UInt8]

    /// An IPv4 address.
    init(ipv4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        bytes = [a, b, c, d]
    }

    /// An IPv6 address's 16 bytes (network order).
    init(ipv6 address: [UInt8]) {
        precondition(address.count == 16, "IPv6 addresses are 16 bytes")
        let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]
        if Array(address[0..<12]) == mappedPrefix {
            bytes = Array(address[12..<16])
        } else {
            bytes = Array(address[0..<8]) + [0xFF]  // the /64, marked so it can never equal an IPv4 key
        }
    }

    /// Anything that is not IP (a Unix socket): all such clients share one key.
    static let other = ClientAddressKey(raw: [])

    private init(raw: [UInt8]) {
        bytes = raw
    }

    var description: String {
        switch bytes.count {
        case 4: return bytes.map(String.init).joined(separator: ".")
        case 9: return stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":") + "::/64"
        default: return "non-IP"
        }
    }
}
