/// A cluster node's client address, as it appears in `CLUSTER SHARDS`/`CLUSTER SLOTS` and in
/// `MOVED`/`ASK` replies.
public struct ClusterNodeAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Host name or IP literal (IPv6 without brackets).
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` as Redis prints it in redirects (`MOVED 42 10.0.0.1:6379`, `::1:6379`): the
    /// port follows the last colon. An empty host (`:6379`, sent when a node does not know its own
    /// address) means `defaultHost`, the host of the node that sent the reply.
    init?(parsing text: Substring, defaultHost: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host.isEmpty || host == "?" ? defaultHost : host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }
}

/// Which primary serves which hash slots: a snapshot of `CLUSTER SHARDS` (Redis ≥ 7.0) or
/// `CLUSTER SLOTS`. Pure value; parsing is strict about shape and lenient about fields it does not need.
public struct ClusterTopology: Sendable, Equatable {
    /// One node of a shard.
    public struct Node: Sendable, Equatable {
        /// The 40-character node id (empty if the reply had none).
        public var id: String
        public var address: ClusterNodeAddress
        /// `false` when the reply says the node failed (`health: fail` in `CLUSTER SHARDS`).
        public var isHealthy: Bool

        public init(id: String, address: ClusterNodeAddress, isHealthy: Bool = true) {
            self.id = id
            self.address = address
            self.isHealthy = isHealthy
        }
    }

    /// A primary, its replicas, and the slots they serve.
    public struct Shard: Sendable, Equatable {
        public var slots: [ClosedRange<Int>]
        public var primary: Node
        public var replicas: [Node]

        public init(slots: [ClosedRange<Int>], primary: Node, replicas: [Node] = []) {
            self.slots = slots
            self.primary = primary
            self.replicas = replicas
        }
    }

    /// Why a `CLUSTER SHARDS`/`CLUSTER SLOTS` reply was not understood.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Shards that serve at least one slot, sorted by their first slot.
    public let shards: [Shard]
    /// For each slot, the index into `shards` of its owner, or -1 when no shard serves it.
    private let owners: [Int16]

    /// Builds a topology; a slot claimed by two shards goes to the later one.
    public init(shards: [Shard]) {
        let served = shards.filter { !$0.slots.isEmpty }.sorted { $0.slots.map(\.lowerBound).min()! < $1.slots.map(\.lowerBound).min()! }
        var owners = [Int16](repeating: -1, count: ClusterSlot.count)
        for (index, shard) in served.enumerated() {
            for range in shard.slots {
                for slot in range.clamped(to: 0...(ClusterSlot.count - 1)) { owners[slot] = Int16(index) }
            }
        }
        self.shards = served
        self.owners = owners
    }

    /// The primary serving `slot`, if any.
    public func primary(forSlot slot: Int) -> ClusterNodeAddress? {
        guard (0..<ClusterSlot.count).contains(slot) else { return nil }
        let owner = Int(owners[slot])
        return owner >= 0 ? shards[owner].primary.address : nil
    }

    /// The index into `shards` of the shard serving `slot`, if any.
    public func shardIndex(forSlot slot: Int) -> Int? {
        guard (0..<ClusterSlot.count).contains(slot) else { return nil }
        let owner = Int(owners[slot])
        return owner >= 0 ? owner : nil
    }

    /// The primaries' addresses, each once, sorted.
    public var primaries: [ClusterNodeAddress] {
        Array(Set(shards.map(\.primary.address))).sorted()
    }

    /// Whether every slot has a primary.
    public var coversAllSlots: Bool { !owners.contains(-1) }

    /// Whether every slot has a primary not reported as failed: the state in which refreshing at the
    /// slow, periodic pace is enough.
    public var isHealthy: Bool { coversAllSlots && shards.allSatisfy(\.primary.isHealthy) }

    /// The slot-to-primary table, for routing.
    func routes() -> ClusterSlotRoutes {
        ClusterSlotRoutes(addresses: shards.map(\.primary.address), owners: owners)
    }

    // MARK: - Parsing

    /// Parses a `CLUSTER SHARDS` reply (Redis ≥ 7.0): an array of shards, each a flat key/value list
    /// with `slots` (start/end pairs) and `nodes` (flat key/value lists with `id`, `endpoint`, `ip`,
    /// `port`, `role`, `health`). Shards without slots (a failed primary after its failover) are
    /// dropped. A node's address is its `endpoint`, else its `ip`, else `defaultHost` (the host
    /// the reply came from) when the node does not know its own address.
    public static func parseShards(_ reply: RedisValue, defaultHost: String) throws(ParseError) -> ClusterTopology {
        guard let entries = reply.array else { throw ParseError(description: "CLUSTER SHARDS: not an array: \(reply)") }
        var shards: [Shard] = []
        for entry in entries {
            let fields = try map(entry, what: "shard")
            guard let slotValues = fields["slots"]?.array, let nodeValues = fields["nodes"]?.array else {
                throw ParseError(description: "CLUSTER SHARDS: shard without slots or nodes: \(entry)")
            }
            let bounds = try slotValues.map { value throws(ParseError) -> Int64 in
                guard let bound = value.int else { throw ParseError(description: "CLUSTER SHARDS: slot \(value)") }
                return bound
            }
            guard bounds.count % 2 == 0 else { throw ParseError(description: "CLUSTER SHARDS: odd slot list \(bounds)") }
            var ranges: [ClosedRange<Int>] = []
            for index in stride(from: 0, to: bounds.count, by: 2) {
                ranges.append(try slotRange(bounds[index], bounds[index + 1]))
            }
            var primaries: [Node] = []
            var replicas: [Node] = []
            for nodeValue in nodeValues {
                let node = try map(nodeValue, what: "node")
                guard let port = node["port"]?.int, (1...65535).contains(port) else { continue }  // TLS-only node
                var host = node["endpoint"]?.string ?? ""
                if host.isEmpty || host == "?" { host = node["ip"]?.string ?? "" }
                if host.isEmpty || host == "?" { host = defaultHost }
                let parsed = Node(
                    id: node["id"]?.string ?? "",
                    address: ClusterNodeAddress(host: host, port: Int(port)),
                    isHealthy: node["health"]?.string != "fail"
                )
                if node["role"]?.string == "master" { primaries.append(parsed) } else { replicas.append(parsed) }
            }
            // A shard lists one primary; if a reply ever shows two (an old one not yet forgotten),
            // prefer the healthy one.
            guard !ranges.isEmpty, let primary = primaries.first(where: \.isHealthy) ?? primaries.first else { continue }
            shards.append(Shard(slots: ranges, primary: primary, replicas: replicas))
        }
        return ClusterTopology(shards: shards)
    }

    /// Parses a `CLUSTER SLOTS` reply: an array of `[start, end, primary, replica…]`, each node being
    /// `[host, port, id, …]`. Ranges served by the same primary are merged into one shard.
    public static func parseSlots(_ reply: RedisValue, defaultHost: String) throws(ParseError) -> ClusterTopology {
        guard let entries = reply.array else { throw ParseError(description: "CLUSTER SLOTS: not an array: \(reply)") }
        var shards: [Shard] = []
        var shardIndex: [ClusterNodeAddress: Int] = [:]
        for entry in entries {
            guard let items = entry.array, items.count >= 3, let start = items[0].int, let end = items[1].int else {
                throw ParseError(description: "CLUSTER SLOTS: malformed entry \(entry)")
            }
            let range = try slotRange(start, end)
            let nodes = try items[2...].map { value throws(ParseError) -> Node in
                guard let fields = value.array, fields.count >= 2, let port = fields[1].int, (1...65535).contains(port)
                else { throw ParseError(description: "CLUSTER SLOTS: malformed node \(value)") }
                var host = fields[0].string ?? ""
                if host.isEmpty || host == "?" { host = defaultHost }
                let id = fields.count > 2 ? fields[2].string ?? "" : ""
                return Node(id: id, address: ClusterNodeAddress(host: host, port: Int(port)))
            }
            let primary = nodes[0]
            if let index = shardIndex[primary.address] {
                shards[index].slots.append(range)
            } else {
                shardIndex[primary.address] = shards.count
                shards.append(Shard(slots: [range], primary: primary, replicas: Array(nodes.dropFirst())))
            }
        }
        return ClusterTopology(shards: shards)
    }

    private static func slotRange(_ start: Int64, _ end: Int64) throws(ParseError) -> ClosedRange<Int> {
        guard start >= 0, end >= start, end < ClusterSlot.count else {
            throw ParseError(description: "slot range \(start)-\(end) outside 0-\(ClusterSlot.count - 1)")
        }
        return Int(start)...Int(end)
    }

    /// A RESP2 map (flat `[key, value, key, value…]`) as a dictionary.
    private static func map(_ value: RedisValue, what: String) throws(ParseError) -> [String: RedisValue] {
        guard let items = value.array, items.count % 2 == 0 else {
            throw ParseError(description: "CLUSTER SHARDS: malformed \(what) \(value)")
        }
        var fields: [String: RedisValue] = [:]
        for index in stride(from: 0, to: items.count, by: 2) {
            if let key = items[index].string { fields[key] = items[index + 1] }
        }
        return fields
    }
}

/// The slot → primary table the client routes with: a topology's table plus the `MOVED` corrections
/// learned since it was fetched (each correction is also a reason to fetch a new topology).
struct ClusterSlotRoutes: Sendable, Equatable {
    /// Distinct primary addresses; `owners` indexes into it.
    private(set) var addresses: [ClusterNodeAddress]
    /// For each slot, the index into `addresses`, or -1.
    private var owners: [Int16]

    /// No routes at all (no topology yet).
    init() {
        addresses = []
        owners = [Int16](repeating: -1, count: ClusterSlot.count)
    }

    fileprivate init(addresses: [ClusterNodeAddress], owners: [Int16]) {
        self.addresses = addresses
        self.owners = owners
    }

    func address(forSlot slot: Int) -> ClusterNodeAddress? {
        guard (0..<ClusterSlot.count).contains(slot) else { return nil }
        let owner = Int(owners[slot])
        return owner >= 0 ? addresses[owner] : nil
    }

    /// Records that `slot` is served by `address` (a `MOVED` reply). Returns whether that changed anything.
    @discardableResult
    mutating func update(slot: Int, to address: ClusterNodeAddress) -> Bool {
        guard (0..<ClusterSlot.count).contains(slot), self.address(forSlot: slot) != address else { return false }
        let index: Int
        if let existing = addresses.firstIndex(of: address) {
            index = existing
        } else {
            index = addresses.count
            addresses.append(address)
        }
        owners[slot] = Int16(index)
        return true
    }

    /// The addresses that serve at least one slot.
    var servingAddresses: Set<ClusterNodeAddress> {
        var used = Set<Int16>()
        for owner in owners where owner >= 0 { used.insert(owner) }
        return Set(used.map { addresses[Int($0)] })
    }
}
