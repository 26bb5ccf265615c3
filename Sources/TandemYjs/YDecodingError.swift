/// Why bytes could not be decoded as a lib0 value, a Yjs update, a state vector or a y-protocols
/// message. Decoding never traps and never allocates more than a bounded multiple of the input:
/// every length and count is checked against the bytes that remain before anything is allocated.
public struct YDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// The input ended inside a value.
        case unexpectedEnd
        /// A varUint or varInt above 2^53 − 1, the largest integer lib0 (JavaScript) represents.
        case integerOutOfRange
        /// A varint written with more bytes than it needs (lib0 and yrs never write one; accepting
        /// it would make re-encoding differ from the input).
        case nonMinimalInteger
        /// A length or count larger than the bytes that remain could hold.
        case lengthExceedsInput
        /// A string that is not valid UTF-8 (lib0 decodes strings with a fatal TextDecoder).
        case invalidUTF8
        /// Text where JSON was expected (Yjs calls JSON.parse on it and would throw).
        case invalidJSON
        /// Any values or JSON nested deeper than the limit.
        case nestingTooDeep
        /// An unknown lib0 Any tag.
        case unknownAnyTag(UInt8)
        /// A struct info byte that is not GC (0), Skip (10) or an item with content ref 1…9.
        case invalidStructInfo(UInt8)
        /// A content-type ref that Yjs does not know (Yjs knows 0…6).
        case unknownTypeRef(UInt64)
        /// A parent-info varUint other than 0 (parent is an ID) or 1 (parent is a root name).
        case invalidParentInfo(UInt64)
        /// A struct of length 0 (nothing Yjs writes; yrs silently drops them).
        case emptyStruct
        /// A clock range past 2^53 − 1.
        case clockOutOfRange
        /// Client sections not in strictly descending client order (Yjs and yrs always write them
        /// so; Yjs's mergeUpdates loses structs when they are not, so Tandem refuses them).
        case clientsNotDescending
        /// Bytes left after the value.
        case trailingBytes
        /// A y-protocols message type this codec does not know.
        case unknownMessageType(UInt64)
    }

    public let reason: Reason
    /// Where in the input the problem was found.
    public let offset: Int

    public init(_ reason: Reason, at offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "\(self.reason) at byte \(self.offset)" }
}
