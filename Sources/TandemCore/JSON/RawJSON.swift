/// A JSON value kept as the bytes it arrived as, parsed only when needed (a push's ops: see
/// `JSONParser.parse(_:deferring:maxDepth:)` and `ClientMessage.decode`).
///
/// The bytes were only delimited (strings and bracket nesting), not validated: `parse` is where invalid
/// JSON is found.
public struct RawJSON: Equatable, Sendable {
    public let bytes: [UInt8]
    /// How deep inside its message the value was (the depth budget it had left: `maxDepth - depth`).
    public let depth: Int

    public init(_ bytes: [UInt8], depth: Int = 0) {
        self.bytes = bytes
        self.depth = depth
    }

    public init(_ text: String, depth: Int = 0) {
        self.init(Array(text.utf8), depth: depth)
    }

    /// The value, held to `JSONParser.parse`'s rules; nesting counts from the message it was in, so a
    /// value is accepted exactly when it would have been as part of the whole message.
    public func parse(maxDepth: Int = JSONParser.defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try JSONParser.parse(bytes, maxDepth: max(maxDepth - depth, 0))
    }
}
