/// The common presence update, decoded without building `JSONValue`s (issue 14).
///
/// Nearly every message a client sends is `{"t":"presence","doc":D,"state":{…}}`, and what clients send
/// (`JSON.stringify`, TandemKit's writer) is compact, usually with short ASCII strings and keys in sorted
/// order already: exactly the canonical bytes `PresenceState` keeps. For such a message the state's bytes
/// are checked once, copied once, and the message's dictionaries, strings and re-serialization are not
/// made (they were most of an update's allocations).
///
/// Only the happy path is taken here: a message is accepted only when its state is already canonical, so
/// the result is the one `ClientMessage.decode` gives through the parser (`PresenceFastPathTests` checks
/// both on generated messages). Anything else — whitespace, escapes, non-ASCII, unsorted or duplicate
/// keys, extra fields, another type, a state over the limit, nesting over the limit, invalid JSON — returns
/// nil, and the parser decides (and words the error).
enum PresenceFastPath {
    /// - Parameter knownDoc: a doc id the caller decoded before (so a valid one): when the message names
    ///   the same doc, its id is that string, not a new one (issue 14: a doc id over 15 bytes is a heap
    ///   string, one allocation per update, and checking its characters cost more than comparing them).
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, limits: ProtocolLimits, knownDoc: String? = nil) -> ClientMessage? {
        var scanner = FastPathScanner(bytes: bytes, maxDepth: limits.maxJSONDepth)
        return scanner.presenceMessage(maxStateBytes: limits.maxStateBytes, knownDoc: knownDoc)
    }
}

extension FastPathScanner {
    fileprivate mutating func presenceMessage(maxStateBytes: Int, knownDoc: String?) -> ClientMessage? {
        // The message object is at depth 1, its `state` at 2 (as `JSONParser` counts).
        guard maxDepth >= 2, consume(UInt8(ascii: "{")) else { return nil }
        var sawType = false
        var doc: Range<Int>?
        var state: Range<Int>?
        repeat {
            guard let key = asciiString(), consume(UInt8(ascii: ":")) else { return nil }
            if equals(key, "t") {
                guard !sawType, let value = asciiString(), equals(value, "presence") else { return nil }
                sawType = true
            } else if equals(key, "doc") {
                guard doc == nil, let value = asciiString() else { return nil }
                doc = value
            } else if equals(key, "state") {
                let start = index
                guard state == nil, canonicalObject(depth: 2) else { return nil }
                state = start..<index
            } else {
                return nil
            }
        } while consume(UInt8(ascii: ","))
        guard consume(UInt8(ascii: "}")), index == bytes.count, sawType, let doc, let state,
            state.count <= maxStateBytes
        else { return nil }
        let docBytes = slice(doc)
        let docID: String
        if let knownDoc, Self.equals(knownDoc, docBytes) {
            docID = knownDoc
        } else {
            guard DocID.isValid(utf8: docBytes) else { return nil }
            docID = String(decoding: docBytes, as: UTF8.self)
        }
        return .presence(doc: docID, state: PresenceState(canonicalBytes: Array(slice(state))))
    }

    private static func equals(_ string: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        // Byte by byte over the string's own storage (`withUTF8` copies nothing for a native or small
        // string): `elementsEqual` on the UTF-8 view cost ~500 instructions for a 15-byte id.
        var string = string
        return string.withUTF8 { utf8 in
            guard utf8.count == bytes.count else { return false }
            for index in 0..<utf8.count where utf8[index] != bytes[index] { return false }
            return true
        }
    }
}
