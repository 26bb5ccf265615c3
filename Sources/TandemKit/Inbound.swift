import TandemCore

/// What the server said in its `welcome`.
public struct Welcome: Sendable, Hashable {
    /// This connection's session id: kept to resume after a reconnect.
    public var session: String
    /// The node serving the connection.
    public var node: String
    public var user: String
    /// Whether `?resume=` was honoured (others saw no leave and no join).
    public var resumed: Bool
    /// The protocol version spoken on this connection.
    public var protocolVersion: Int
    /// Presence updates per second the server applies per (user, doc); ``TandemDocument/setPresence(_:)``
    /// sends no faster.
    public var presenceRate: Int
    public var maxMessageBytes: Int
    public var maxStateBytes: Int
}

/// A server message, parsed as far as this client needs it. Unknown types and fields are ignored
/// (docs/protocol.md: clients must ignore what they do not know).
enum Inbound {
    typealias LogEntry = (clock: UInt64, ops: Ops, by: String?, id: Int?)

    case welcome(Welcome)
    case joined(doc: String, role: String, clock: UInt64?, presence: [Member])
    case presence(doc: String, joined: [Member], updated: [Member], left: [String])
    case snapshot(doc: String, clock: UInt64, records: [String: JSONValue], more: Bool)
    case log(doc: String, entries: [LogEntry], more: Bool)
    case patch(doc: String, clock: UInt64, ops: Ops, by: String?, id: Int?)
    case result(doc: String, id: Int, action: String, clock: UInt64?, ops: Ops?, reason: String?)
    case left(doc: String)
    /// History answers (docs/protocol.md "Version history").
    case history(doc: String, head: UInt64, versions: [HistoryVersion], more: Bool)
    case at(doc: String, clock: UInt64, atMs: UInt64, records: [String: JSONValue], more: Bool)
    case restored(doc: String, restoredFrom: UInt64, clock: UInt64?)
    case error(ServerError)
    case pong
    case ignored

    /// Parses one text frame; nil when it is not a message this client can read (logged by the caller).
    init?(text: String) {
        guard let parsed = Self.parse(text: text) else { return nil }
        self = parsed.message
    }

    /// Parses one text frame, with the doc checksum it carries (issue 13): a snapshot's, a patch's or a
    /// result's `sum`, or for a log chunk its last entry's (the state after the whole chunk).
    static func parse(text: String) -> (message: Inbound, sum: DocChecksum?)? {
        guard let json = try? JSONParser.parse(text, maxDepth: Wire.maxInboundDepth), let message = Inbound(json: json) else {
            return nil
        }
        let carrier = json["t"]?.stringValue == "log" ? json["entries"]?.arrayValue?.last : json
        return (message, carrier?["sum"]?.stringValue.flatMap { DocChecksum(hex: $0) })
    }

    private init?(json: JSONValue) {
        guard let type = json["t"]?.stringValue else { return nil }
        let doc = json["doc"]?.stringValue
        switch type {
        case "welcome":
            let limits = json["limits"]
            guard let session = json["session"]?.stringValue else { return nil }
            self = .welcome(Welcome(
                session: session,
                node: json["node"]?.stringValue ?? "",
                user: json["user"]?.stringValue ?? "",
                resumed: json["resumed"]?.boolValue ?? false,
                protocolVersion: json["protocol"]?.intValue ?? 1,
                presenceRate: limits?["presenceRate"]?.intValue ?? 20,
                maxMessageBytes: limits?["maxMessageBytes"]?.intValue ?? 1_114_112,
                maxStateBytes: limits?["maxStateBytes"]?.intValue ?? 1024
            ))
        case "joined":
            guard let doc else { return nil }
            self = .joined(
                doc: doc, role: json["role"]?.stringValue ?? "", clock: json["clock"]?.uint64,
                presence: (json["presence"]?.arrayValue ?? []).compactMap(Member.init(json:)))
        case "presence":
            guard let doc else { return nil }
            self = .presence(
                doc: doc,
                joined: (json["joined"]?.arrayValue ?? []).compactMap(Member.init(json:)),
                updated: (json["updated"]?.arrayValue ?? []).compactMap(Member.init(json:)),
                left: (json["left"]?.arrayValue ?? []).compactMap(\.stringValue))
        case "snapshot":
            guard let doc, let clock = json["clock"]?.uint64 else { return nil }
            self = .snapshot(
                doc: doc, clock: clock, records: json["records"]?.objectValue ?? [:],
                more: json["more"]?.boolValue ?? false)
        case "log":
            guard let doc else { return nil }
            var entries: [LogEntry] = []
            for entry in json["entries"]?.arrayValue ?? [] {
                guard let clock = entry["clock"]?.uint64, let opsJSON = entry["ops"], let ops = try? Ops(json: opsJSON) else {
                    return nil
                }
                entries.append((clock, ops, entry["by"]?.stringValue, pushID(entry["id"])))
            }
            self = .log(doc: doc, entries: entries, more: json["more"]?.boolValue ?? false)
        case "patch":
            guard let doc, let clock = json["clock"]?.uint64, let opsJSON = json["ops"], let ops = try? Ops(json: opsJSON) else {
                return nil
            }
            self = .patch(doc: doc, clock: clock, ops: ops, by: json["by"]?.stringValue, id: pushID(json["id"]))
        case "result":
            guard let doc, let action = json["action"]?.stringValue else { return nil }
            guard let id = pushID(json["id"]) else {
                self = .ignored
                return
            }
            self = .result(
                doc: doc, id: id, action: action, clock: json["clock"]?.uint64,
                ops: json["ops"].flatMap { try? Ops(json: $0) }, reason: json["reason"]?.stringValue)
        case "left":
            guard let doc else { return nil }
            self = .left(doc: doc)
        case "history":
            guard let doc, let head = json["head"]?.uint64 else { return nil }
            self = .history(
                doc: doc, head: head,
                versions: (json["versions"]?.arrayValue ?? []).compactMap { try? HistoryVersion(json: $0.serialized) },
                more: json["more"]?.boolValue ?? false)
        case "at":
            guard let doc, let clock = json["clock"]?.uint64, let records = json["records"]?.objectValue else { return nil }
            self = .at(doc: doc, clock: clock, atMs: json["at"]?.uint64 ?? 0, records: records, more: json["more"]?.boolValue ?? false)
        case "restored":
            guard let doc, let from = json["restoredFrom"]?.uint64 else { return nil }
            self = .restored(doc: doc, restoredFrom: from, clock: json["clock"]?.uint64)
        case "error":
            self = .error(ServerError(
                code: json["code"]?.stringValue ?? "unknown", message: json["message"]?.stringValue ?? "",
                doc: doc, pushID: pushID(json["id"]), retryAfterMs: json["retryAfterMs"]?.intValue))
        case "pong":
            self = .pong
        default:
            self = .ignored
        }
    }
}

/// Messages this client sends.
enum Outbound {
    static func join(doc: String, state: JSONValue?, since: UInt64?, schema: Int? = nil, presence: PresenceMode = .full) -> String {
        var fields: [String: JSONValue] = ["t": .string("join"), "doc": .string(doc)]
        // Only the default is left out; a hidden or none join has no state.
        if presence != .full { fields["presence"] = .string(presence.rawValue) } else if let state { fields["state"] = state }
        if let since { fields["since"] = .number(since) }
        if let schema { fields["schema"] = .number(schema) }
        return JSONValue.object(fields).serializedString
    }

    static func presence(doc: String, state: JSONValue) -> String {
        JSONValue.object(["t": .string("presence"), "doc": .string(doc), "state": state]).serializedString
    }

    static func push(doc: String, id: Int, base: UInt64, ops: Ops) -> String {
        JSONValue.object([
            "t": .string("push"), "doc": .string(doc), "id": .number(id), "base": .number(base), "ops": ops.json,
        ]).serializedString
    }

    /// `{"t":"diverged"}` (issue 13): this client's state after `clock` did not match the commit's checksum.
    static func diverged(doc: String, clock: UInt64, sum: DocChecksum) -> String {
        JSONValue.object(["t": .string("diverged"), "doc": .string(doc), "clock": .number(clock), "sum": .string(sum.hex)])
            .serializedString
    }

    static func ack(doc: String, clock: UInt64) -> String {
        JSONValue.object(["t": .string("ack"), "doc": .string(doc), "clock": .number(clock)]).serializedString
    }

    static func leave(doc: String) -> String {
        JSONValue.object(["t": .string("leave"), "doc": .string(doc)]).serializedString
    }

    static let ping = #"{"t":"ping"}"#
}
