import NIOCore
import TandemRedis
import TandemYjs

/// Yjs awareness in Redis, with the protocol-v1 presence scripts (`PresenceScripts`) on keys of its own:
///
/// - `tandem:yjs:{room}:aw:NODE` hash `clientID → "CLIENTID CLOCK NODE JSON"` of the entries NODE's
///   clients own, PEXPIREd to `--presence-ttl-ms` on every write and refresh;
/// - `tandem:yjs:{room}:awnodes` sorted set `NODE → deadline`; the sweep turns passed deadlines (a dead
///   node) into `{"k":"g","gone":[…]}` on the room's channel, and every node removes those entries;
/// - on the room's channel, `a NODE ` + an encoded awareness update: one node's changes for the others.
final class YjsAwarenessStore: Sendable {
    private let redis: RedisClient
    private let nodeID: String
    private let ttlMs: Int

    init(redis: RedisClient, nodeID: String, ttlMs: Int) {
        self.redis = redis
        self.nodeID = nodeID
        self.ttlMs = ttlMs
    }

    static func nodeKey(_ room: String, node: String) -> String { prefix(room) + node }
    static func prefix(_ room: String) -> String { "tandem:yjs:{\(room)}:aw:" }
    static func nodes(_ room: String) -> String { "tandem:yjs:{\(room)}:awnodes" }
    static let publishedPrefix: [UInt8] = Array("a ".utf8)

    /// Writes this node's changed entries (removals deleted) and publishes them; `refresh` renews the
    /// node's registration (its deadline in the sorted set). A refresh without changes publishes an empty
    /// update: the other nodes' heartbeat of this one (see `YjsAwareness.silentNodes`).
    func write(room: String, changes: [YAwarenessUpdate.Entry], refresh: Bool, on loop: EventLoop) -> EventLoopFuture<Void> {
        let upserts = changes.filter { !$0.isRemoval }
        let deletes = changes.filter(\.isRemoval)
        var args: [any RedisArgument] = [nodeID, ttlMs, "0", refresh ? "1" : "0", YjsKeys.channel(room)]
        var payload = Self.publishedPrefix + Array(nodeID.utf8) + [UInt8(ascii: " ")]
        payload += YAwarenessUpdate(entries: changes).encoded()
        args.append(payload)
        args.append(upserts.count)
        for entry in upserts {
            args.append("\(entry.clientID)")
            args.append("\(entry.clientID) \(entry.clock) \(nodeID) \(entry.stateJSON)")
        }
        for entry in deletes { args.append("\(entry.clientID)") }
        return redis.evalScript(
            PresenceScripts.write, keys: [Self.nodeKey(room, node: nodeID), Self.nodes(room)], args: args, on: loop
        ).map { _ in }
    }

    /// Every live entry of the room, on every node, with its node.
    func snapshot(room: String, on loop: EventLoop) -> EventLoopFuture<[(node: String, entry: YAwarenessUpdate.Entry)]> {
        redis.evalScript(PresenceScripts.snapshot, keys: [Self.nodes(room)], args: [Self.prefix(room)], on: loop).map { value in
            (value.array ?? []).compactMap { $0.string.flatMap(Self.parse) }
        }
    }

    /// Removes nodes whose registration expired; every node hears of it on the channel.
    func sweep(room: String, on loop: EventLoop) -> EventLoopFuture<Void> {
        redis.evalScript(
            PresenceScripts.sweep, keys: [Self.nodes(room)], args: [Self.prefix(room), YjsKeys.channel(room)], on: loop
        ).map { _ in }
    }

    /// `CLIENTID CLOCK NODE JSON`.
    static func parse(_ text: String) -> (node: String, entry: YAwarenessUpdate.Entry)? {
        let parts = text.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, let clientID = UInt64(parts[0]), let clock = UInt64(parts[1]) else { return nil }
        return (String(parts[2]), .init(clientID: clientID, clock: clock, stateJSON: String(parts[3])))
    }

    /// A node's published changes (`a NODE ` + update), if `payload` is one.
    static func published(_ payload: [UInt8]) -> (node: String, update: YAwarenessUpdate)? {
        guard payload.starts(with: publishedPrefix),
            let space = payload[publishedPrefix.count...].firstIndex(of: UInt8(ascii: " ")),
            let update = try? YAwarenessUpdate(decoding: Array(payload[(space + 1)...]))
        else { return nil }
        return (String(decoding: payload[publishedPrefix.count..<space], as: UTF8.self), update)
    }

    /// The nodes of a sweep's `{"k":"g","gone":["a","b"]}` (node ids need no JSON escaping).
    static func goneNodes(_ payload: [UInt8]) -> [String]? {
        let text = String(decoding: payload, as: UTF8.self)
        guard text.hasPrefix(#"{"k":"g","gone":["#), let open = text.firstIndex(of: "["), let close = text.lastIndex(of: "]")
        else { return nil }
        return text[text.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: ["\""]) }
    }
}
