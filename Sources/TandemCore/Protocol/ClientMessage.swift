/// A message from a client (protocol v1: one JSON object per text frame, `"t"` is the type).
public enum ClientMessage: Equatable, Sendable {
    /// `schema`: the version of the doc's record schema the client was built for (`schema_mismatch` if the
    /// server's differs). `presence`: how the session takes part in the doc's presence (`"presence"`,
    /// default `full`; see `PresenceMode`).
    case join(doc: String, state: PresenceState?, since: UInt64?, schema: Int? = nil, presence: PresenceMode = .full)
    case leave(doc: String)
    case presence(doc: String, state: PresenceState)
    case ping
    /// `ops` as received, not parsed yet: a push refused for overload is answered from its envelope
    /// alone, so its ops are parsed (`RawJSON.parse`) only once it is admitted.
    case push(doc: String, id: JSONValue, base: UInt64, ops: RawJSON)
    case sync(doc: String, from: UInt64, limit: Int?)
    case ack(doc: String, clock: UInt64)
    /// The client's state of `doc` after `clock` did not match that commit's checksum (issue 13): it
    /// resyncs from a snapshot; the server counts the report. `sum`: what the client computed, if it said.
    case diverged(doc: String, clock: UInt64, sum: DocChecksum?)
    /// Version history (issue 15, viewers and editors): the versions before `before`, newest first.
    case history(doc: String, before: UInt64?, limit: Int?)
    /// The state after commit `clock`, or at `time` (ms since 1970): exactly one is set.
    case at(doc: String, clock: UInt64?, time: UInt64?)
    /// Editors: one new commit that makes the doc what it was after `clock`.
    case restore(doc: String, clock: UInt64)

    /// The doc a message is about, for error replies.
    public var doc: String? {
        switch self {
        case .join(let d, _, _, _, _), .leave(let d), .presence(let d, _), .push(let d, _, _, _), .sync(let d, _, _),
            .ack(let d, _), .diverged(let d, _, _), .history(let d, _, _), .at(let d, _, _), .restore(let d, _):
            return d
        case .ping:
            return nil
        }
    }

    /// Decodes one text frame. Throws `ProtocolError` with `bad_message`, `unknown_type` or `too_large`.
    ///
    /// Unknown extra fields are ignored so newer clients can talk to older servers. A push's `"ops"` is
    /// only delimited here, not parsed (so an `"ops"` field of any other message is never looked at).
    /// - Parameter knownDoc: a doc id this connection decoded before: a presence update naming the same doc
    ///   gets that string instead of a new one (see `PresenceFastPath.decode`).
    public static func decode(
        _ frame: some Collection<UInt8>, limits: ProtocolLimits, knownDoc: String? = nil
    ) throws(ProtocolError) -> ClientMessage {
        // The common presence update, already canonical, without the parser (issue 14).
        if let message = frame.withContiguousStorageIfAvailable({ PresenceFastPath.decode($0, limits: limits, knownDoc: knownDoc) })
            ?? nil
        {
            return message
        }
        // The common push, its envelope without the parser (issue 8).
        if let message = frame.withContiguousStorageIfAvailable({ PushFastPath.decode($0, limits: limits) }) ?? nil {
            return message
        }
        return try decodeParsed(frame, limits: limits)
    }

    /// `decode` through the parser only (what the fast path must agree with).
    static func decodeParsed(_ frame: some Collection<UInt8>, limits: ProtocolLimits) throws(ProtocolError) -> ClientMessage {
        let value: JSONValue
        let rawOps: RawJSON?
        do {
            (value, rawOps) = try JSONParser.parse(frame, deferring: "ops", maxDepth: limits.maxJSONDepth)
        } catch {
            throw ProtocolError(.badMessage, "invalid JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw ProtocolError(.badMessage, "a message must be a JSON object")
        }
        guard let type = object["t"]?.stringValue else {
            throw ProtocolError(.badMessage, "missing string field \"t\"")
        }
        let fields = Fields(object: object, type: type)
        switch type {
        case "join":
            let doc = try fields.doc()
            let state = try fields.optionalState(doc: doc, limits: limits)
            let since = try fields.optionalClock("since", doc: doc)
            var schema: Int?
            if let value = object["schema"] {
                guard let version = value.intValue, version >= 1, version <= Self.maxSchemaVersion else {
                    throw ProtocolError(
                        .badMessage, "\"schema\" must be an integer from 1 to \(Self.maxSchemaVersion) (the schema version)", doc: doc)
                }
                schema = version
            }
            var presence = PresenceMode.full
            if let value = object["presence"] {
                guard let name = value.stringValue, let mode = PresenceMode(rawValue: name) else {
                    throw ProtocolError(.badMessage, #""presence" must be "full", "hidden" or "none""#, doc: doc)
                }
                presence = mode
            }
            if state != nil, !presence.isShown {
                throw ProtocolError(
                    .badMessage, #"a join with "presence":"\#(presence.rawValue)" has no presence state: leave out "state""#,
                    doc: doc)
            }
            return .join(doc: doc, state: state, since: since, schema: schema, presence: presence)
        case "leave":
            return .leave(doc: try fields.doc())
        case "presence":
            let doc = try fields.doc()
            guard let state = try fields.optionalState(doc: doc, limits: limits) else {
                throw ProtocolError(.badMessage, "presence needs an object field \"state\"", doc: doc)
            }
            return .presence(doc: doc, state: state)
        case "ping":
            return .ping
        case "push":
            let doc = try fields.doc()
            guard let id = object["id"], Self.isValidPushID(id) else {
                throw ProtocolError(
                    .badMessage,
                    "push needs \"id\": a number of at most \(Self.maxPushIDNumberLength) characters or a string of at most \(Self.maxPushIDStringLength) bytes",
                    doc: doc)
            }
            guard let base = try fields.optionalClock("base", doc: doc, pushID: id) else {
                throw ProtocolError(.badMessage, "push needs \"base\": a clock (non-negative integer)", doc: doc, pushID: id)
            }
            guard let ops = rawOps, ops.bytes.first == UInt8(ascii: "{") else {
                throw ProtocolError(.badMessage, "push needs an object field \"ops\"", doc: doc, pushID: id)
            }
            return .push(doc: doc, id: id, base: base, ops: ops)
        case "sync":
            let doc = try fields.doc()
            guard let from = try fields.optionalClock("from", doc: doc) else {
                throw ProtocolError(.badMessage, "sync needs \"from\": a clock", doc: doc)
            }
            var limit: Int? = nil
            if let raw = object["limit"] {
                // Any size is accepted (the server caps it at a chunk), but it must be a number a client can
                // represent, so no later arithmetic on it can overflow.
                guard let l = raw.uint64Value, l > 0, l <= Self.maxClock else {
                    throw ProtocolError(.badMessage, "\"limit\" must be an integer from 1 to \(Self.maxClock)", doc: doc)
                }
                limit = Int(l)
            }
            return .sync(doc: doc, from: from, limit: limit)
        case "ack":
            let doc = try fields.doc()
            guard let clock = try fields.optionalClock("clock", doc: doc) else {
                throw ProtocolError(.badMessage, "ack needs \"clock\"", doc: doc)
            }
            return .ack(doc: doc, clock: clock)
        case "diverged":
            let doc = try fields.doc()
            guard let clock = try fields.optionalClock("clock", doc: doc) else {
                throw ProtocolError(.badMessage, "diverged needs \"clock\"", doc: doc)
            }
            var sum: DocChecksum?
            if let raw = object["sum"], raw != .null {
                guard let parsed = raw.stringValue.flatMap({ DocChecksum(hex: $0) }) else {
                    throw ProtocolError(.badMessage, "\"sum\" must be a checksum: 16 hex digits", doc: doc)
                }
                sum = parsed
            }
            return .diverged(doc: doc, clock: clock, sum: sum)
        case "history":
            let doc = try fields.doc()
            let before = try fields.optionalClock("before", doc: doc)
            var limit: Int?
            if let raw = object["limit"] {
                guard let l = raw.uint64Value, l > 0, l <= UInt64(Self.maxHistoryLimit) else {
                    throw ProtocolError(.badMessage, "\"limit\" must be an integer from 1 to \(Self.maxHistoryLimit)", doc: doc)
                }
                limit = Int(l)
            }
            return .history(doc: doc, before: before, limit: limit)
        case "at":
            let doc = try fields.doc()
            let clock = try fields.optionalClock("clock", doc: doc)
            var time: UInt64?
            if let raw = object["time"] {
                guard let t = raw.uint64Value, t <= Self.maxClock else {
                    throw ProtocolError(.badMessage, "\"time\" must be milliseconds since 1970 (a non-negative integer)", doc: doc)
                }
                time = t
            }
            guard (clock == nil) != (time == nil) else {
                throw ProtocolError(.badMessage, "at needs exactly one of \"clock\" and \"time\"", doc: doc)
            }
            return .at(doc: doc, clock: clock, time: time)
        case "restore":
            let doc = try fields.doc()
            guard let clock = try fields.optionalClock("clock", doc: doc) else {
                throw ProtocolError(.badMessage, "restore needs \"clock\": a clock", doc: doc)
            }
            return .restore(doc: doc, clock: clock)
        default:
            throw ProtocolError(.unknownType, "unknown message type \"\(excerpt(type))\"")
        }
    }

    /// The largest clock a client may send (`since`, `base`, `from`, ack `clock`) and the largest `limit`:
    /// 2^53 − 1, JavaScript's `Number.MAX_SAFE_INTEGER`. No client can represent a larger clock exactly,
    /// and a bound this far below `UInt64.max` keeps every `+ 1` on a clock from overflowing.
    public static let maxClock: UInt64 = (1 << 53) - 1
    /// Most versions one `history` request asks for (and the default).
    public static let maxHistoryLimit = 100

    /// Longest numeric push id, as its JSON lexeme (`-12.5e3` is 7). Push ids are stored in the doc's log
    /// and `pushes` hash and compared by the commit script on every later commit of the session, so they
    /// must be short; 32 characters hold any integer a client uses (and any 64-bit one) with room to spare.
    public static let maxPushIDNumberLength = 32
    /// The highest schema version a join may state (the same bound as a schema file's `version`).
    public static let maxSchemaVersion = DocSchema.maxVersion
    /// Longest string push id, in UTF-8 bytes.
    public static let maxPushIDStringLength = 64

    /// Push ids are echoed back verbatim: a number of at most 32 characters (its JSON lexeme), or a string
    /// of at most 64 bytes.
    public static func isValidPushID(_ id: JSONValue) -> Bool {
        switch id {
        case .number(let lexeme): return lexeme.utf8.count <= maxPushIDNumberLength
        case .string(let s): return s.utf8.count <= maxPushIDStringLength
        default: return false
        }
    }

    private struct Fields {
        var object: [String: JSONValue]
        var type: String

        func doc() throws(ProtocolError) -> String {
            guard let doc = object["doc"]?.stringValue else {
                throw ProtocolError(.badMessage, "\(type) needs a string field \"doc\"")
            }
            guard DocID.isValid(doc) else {
                throw ProtocolError(.badMessage, "doc ids are 1–128 characters of [A-Za-z0-9._:-]")
            }
            return doc
        }

        func optionalClock(_ name: String, doc: String, pushID: JSONValue? = nil) throws(ProtocolError) -> UInt64? {
            guard let raw = object[name], raw != .null else { return nil }
            // Range-checked here, where it is parsed, so nothing downstream sees a clock it cannot add 1 to.
            guard let clock = raw.uint64Value, clock <= ClientMessage.maxClock else {
                throw ProtocolError(
                    .badMessage, "\"\(name)\" must be a clock: an integer from 0 to \(ClientMessage.maxClock)", doc: doc,
                    pushID: pushID)
            }
            return clock
        }

        /// The state, validated and serialized here once: its bytes are what entries splice in.
        func optionalState(doc: String, limits: ProtocolLimits) throws(ProtocolError) -> PresenceState? {
            guard let value = object["state"], value != .null else { return nil }
            guard let state = PresenceState(object: value) else {
                throw ProtocolError(.badMessage, "\"state\" must be a JSON object", doc: doc)
            }
            let size = state.bytes.count
            guard size <= limits.maxStateBytes else {
                throw ProtocolError(.tooLarge, "state is \(size) bytes; the limit is \(limits.maxStateBytes)", doc: doc)
            }
            return state
        }
    }
}

/// Limits that shape what a client may send; advertised in `welcome.limits`.
public struct ProtocolLimits: Sendable, Equatable {
    /// Largest text frame accepted; larger ones get `too_large` (the connection stays open).
    public var maxMessageBytes: Int = 1_114_112
    /// Largest presence state, serialized compactly.
    public var maxStateBytes: Int = 1024
    /// Deepest JSON nesting accepted in any message.
    public var maxJSONDepth: Int = 64

    public init() {}
}
