/// The common push, decoded without building `JSONValue`s for its envelope (issue 8).
///
/// Every push went through the parser: a `[String: JSONValue]` for the envelope, a `String` per key and
/// value, the ops delimited and copied — about 13,000 instructions a push in a profile at overload, where
/// refused pushes are most of the messages and each is parsed only to be answered `unavailable`. What
/// clients send (`tandem.js`, TandemKit, tandem-bench) is compact: `{"t":"push","doc":D,"id":N,"base":B,
/// "ops":{…}}`. Such a message is scanned once here; its ops are delimited exactly as the parser delimits a
/// deferred value (`JSONParser.skipValue`: strings skipped, nesting bounded) and parsed later, only if the
/// push is admitted.
///
/// Only the happy path is taken: the five fields, each once, in any order, no whitespace, keys and
/// strings printable ASCII without escapes, `base` a plain non-negative integer. Anything else — other or
/// repeated fields, whitespace, escapes, non-ASCII, a fraction or exponent in `base`, an id or base out of
/// range, nesting over the limit, unterminated values, trailing bytes — returns nil, and the parser
/// decides (and words the error). So the result is always the one `ClientMessage.decodeParsed` gives
/// (`PushFastPathTests` checks both on generated messages).
enum PushFastPath {
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, limits: ProtocolLimits) -> ClientMessage? {
        var scanner = FastPathScanner(bytes: bytes, maxDepth: limits.maxJSONDepth)
        guard let push = scanner.pushEnvelope() else { return nil }
        return .push(
            doc: String(decoding: scanner.slice(push.doc), as: UTF8.self), id: push.id(in: scanner), base: push.base,
            ops: RawJSON(Array(scanner.slice(push.ops)), depth: 1))
    }

    /// The doc and the push id of a message `decode` would decode as a push with a number id, as slices of
    /// `bytes` (nothing copied, nothing allocated): for answering a push to a doc its connection was told to
    /// back off from (`PushBackoff`) without decoding it. Nil for anything else — a string id, or a message
    /// `decode` would not take — which then goes the usual way.
    static func numberIDPush(_ bytes: UnsafeBufferPointer<UInt8>, limits: ProtocolLimits)
        -> (doc: UnsafeBufferPointer<UInt8>, id: UnsafeBufferPointer<UInt8>)?
    {
        var scanner = FastPathScanner(bytes: bytes, maxDepth: limits.maxJSONDepth)
        guard let push = scanner.pushEnvelope(), !push.idIsString else { return nil }
        return (scanner.slice(push.doc), scanner.slice(push.idRange))
    }
}

/// A push's fields as the fast path found them: ranges of the message's bytes, checked as `decode` checks
/// them (doc id, push id, clock range), nothing copied yet.
struct PushEnvelope {
    var doc: Range<Int>
    /// The id's lexeme (a number) or the contents of its string.
    var idRange: Range<Int>
    var idIsString: Bool
    var base: UInt64
    var ops: Range<Int>

    /// The id as the parser gives it.
    func id(in scanner: FastPathScanner) -> JSONValue {
        let text = String(decoding: scanner.slice(idRange), as: UTF8.self)
        return idIsString ? .string(text) : .number(text)
    }
}

extension FastPathScanner {
    fileprivate mutating func pushEnvelope() -> PushEnvelope? {
        // The message object is at depth 1, its ops object at 2 (as `JSONParser` counts).
        guard maxDepth >= 2, consume(UInt8(ascii: "{")) else { return nil }
        var sawType = false
        var doc: Range<Int>?
        var id: (range: Range<Int>, isString: Bool)?
        var base: UInt64?
        var ops: Range<Int>?
        repeat {
            guard let key = asciiString(), consume(UInt8(ascii: ":")) else { return nil }
            if equals(key, "t") {
                guard !sawType, let value = asciiString(), equals(value, "push") else { return nil }
                sawType = true
            } else if equals(key, "doc") {
                guard doc == nil, let value = asciiString() else { return nil }
                doc = value
            } else if equals(key, "id") {
                guard id == nil, let value = pushID() else { return nil }
                id = value
            } else if equals(key, "base") {
                guard base == nil, let value = clock() else { return nil }
                base = value
            } else if equals(key, "ops") {
                let start = index
                guard ops == nil, delimitObject(depth: 1) else { return nil }
                ops = start..<index
            } else {
                return nil
            }
        } while consume(UInt8(ascii: ","))
        guard consume(UInt8(ascii: "}")), index == bytes.count, sawType, let doc, let id, let base, let ops else { return nil }
        // `ClientMessage.isValidPushID`'s bounds (the id is ASCII here: bytes are characters).
        let idLimit = id.isString ? ClientMessage.maxPushIDStringLength : ClientMessage.maxPushIDNumberLength
        guard DocID.isValid(utf8: slice(doc)), id.range.count <= idLimit else { return nil }
        return PushEnvelope(doc: doc, idRange: id.range, idIsString: id.isString, base: base, ops: ops)
    }

    /// A push id: a number's lexeme or the contents of an ASCII string (its length is checked against
    /// `ClientMessage.isValidPushID`'s bounds afterwards, as the parser's path does).
    private mutating func pushID() -> (range: Range<Int>, isString: Bool)? {
        let start = index
        if let string = asciiString() { return (string, true) }
        index = start
        guard number() else { return nil }
        return (start..<index, false)
    }

    /// A clock: digits only, no leading zero, at most `ClientMessage.maxClock` (`Fields.optionalClock`).
    private mutating func clock() -> UInt64? {
        let start = index
        guard index < bytes.count else { return nil }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits() == 0 || index - start > 18 {
            return nil  // (19 digits and more: left to the parser's range check)
        }
        // What follows must end the number (a fraction or exponent is not a clock: the parser says so).
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") || bytes[index] | 0x20 == UInt8(ascii: "e") { return nil }
        var value: UInt64 = 0
        for i in start..<index { value = value * 10 + UInt64(bytes[i] - 0x30) }
        return value <= ClientMessage.maxClock ? value : nil
    }

    /// Moves past an object the way `JSONParser.skipValue(depth:)` does for a deferred value at `depth`:
    /// to the matching close, strings skipped (a backslash skips the byte after it), nesting bounded by
    /// `maxDepth`. Not validated: `RawJSON.parse` does that once the push is admitted.
    private mutating func delimitObject(depth: Int) -> Bool {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return false }
        var nesting = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard index < bytes.count else { return false }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                nesting += 1
                guard depth + nesting <= maxDepth else { return false }
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                nesting -= 1
                if nesting == 0 {
                    index += 1
                    return true
                }
            default:
                break
            }
            index += 1
        }
        return false
    }
}
