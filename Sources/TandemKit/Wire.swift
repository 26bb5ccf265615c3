import TandemCore

/// Constants of the wire format as this client reads it.
enum Wire {
    /// Nesting this client accepts in a server message. The server accepts pushes nested up to 64 levels
    /// (`ProtocolLimits.maxJSONDepth`) and wraps their ops up to 3 levels deeper in `log` entries
    /// (`{"t":"log","entries":[{"ops":…}]}`); 256 leaves room for a server whose limit is raised, and a
    /// message is at most a few MiB, so the recursive parser cannot be driven much deeper than this anyway.
    static let maxInboundDepth = 256
}

/// A push id as the server echoes it (this client sends integers; other ids are not ours).
func pushID(_ value: JSONValue?) -> Int? {
    value?.intValue
}

extension JSONValue {
    var uint64: UInt64? { uint64Value }
    var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
}
