/// A session's presence state: a JSON object, checked once where it enters the node (a client message,
/// an entry from Redis or another node) and from then on kept as its canonical bytes (compact, sorted
/// keys), which entries splice in as they are (issue 14: re-encoding the state on every update was a
/// large part of a presence update's cost).
public struct PresenceState: Sendable, Equatable {
    /// The object's canonical serialization (`JSONValue.serialized`).
    public let bytes: [UInt8]

    /// The state of `value`, or nil if it is not a JSON object.
    public init?(object value: JSONValue) {
        guard value.isObject else { return nil }
        self.bytes = value.serialized
    }

    /// Bytes that are known to be the canonical serialization of an object (from `serialized`).
    init(canonicalBytes: [UInt8]) { self.bytes = canonicalBytes }

    /// The state of an object with these members (`.object([...])` where a state is expected).
    public static func object(_ members: [String: JSONValue]) -> PresenceState {
        PresenceState(canonicalBytes: JSONValue.object(members).serialized)
    }

    /// `{}`: the state of a session that joined without one.
    public static let empty = PresenceState(canonicalBytes: Array("{}".utf8))

    /// The state as a value (off the hot path: resume, tests, status).
    public var value: JSONValue {
        (try? JSONParser.parse(bytes)) ?? .object([:])
    }
}
