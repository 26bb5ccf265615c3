/// The shared records' text lengths from a patch's or a rebase result's `"ops":{…}`, read with a byte scan.
///
/// An editor keeps each shared record's length to address its appends (`SyncEditor.applyShared`). On the hot
/// doc about one patch in ten carries a shared append and reaches every other editor, and parsing the
/// whole message (`JSONParser`: a dictionary per object, a `String` per key and value) was a fifth of the
/// bench's instructions per frame received (callgrind, issue 8 stop 27) — CPU the server beside it did not
/// get. The values are the bench's own (`"ab"` repeated), so a scan reads them; whatever it does not
/// recognise (escapes, non-ASCII text, another shape of op) makes it return false, and the caller parses the
/// message as before. The lengths it finds are the ones the parse finds (`SharedOpsScanTests`).
enum SharedOpsScan {
    /// Sets `lengths[k]` for every `"shK"` op of the message's ops object that sets or appends to the
    /// record's `txt`, as `SyncEditor.applyShared` does from a parse. False if the message has no ops
    /// object or anything in it is not what this reads (some lengths may be set by then: the parse that
    /// follows sets the same ones).
    static func apply(_ raw: UnsafeRawBufferPointer, into lengths: inout [Int]) -> Bool {
        var s = ByteScanner(raw)
        guard s.skip(past: opsObject) else { return false }
        s.skipSpace()
        if s.eat(UInt8(ascii: "}")) { return true }
        while true {
            guard let key = s.opsKey() else { return false }
            if let k = key, k < lengths.count {
                guard let length = s.sharedOp() else { return false }
                if let length { lengths[k] = length }
            } else {
                guard s.skipValue() else { return false }
            }
            s.skipSpace()
            if s.eat(UInt8(ascii: ",")) { continue }
            return s.eat(UInt8(ascii: "}"))
        }
    }

    private static let opsObject = StaticPattern(#""ops":{"#)
    fileprivate static let put = StaticPattern(#"["put",{"txt":"#)
    fileprivate static let patchAppend = StaticPattern(#"["patch",{"txt":["append","#)
    fileprivate static let patchPut = StaticPattern(#"["patch",{"txt":["put","#)
    fileprivate static let closeOp = StaticPattern("}]")
    fileprivate static let closePatchOp = StaticPattern("]}]")
}

/// The few JSON readers the ops scan needs beyond `ByteScanner`'s field search: it walks one object's
/// members in order rather than searching for a key.
extension ByteScanner {
    fileprivate var peek: UInt8? { index < base.count ? base[index] : nil }

    fileprivate mutating func skipSpace() {
        while let b = peek, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { index += 1 }
    }

    fileprivate mutating func eat(_ byte: UInt8) -> Bool {
        skipSpace()
        guard peek == byte else { return false }
        index += 1
        return true
    }

    /// `"name":` (the colon eaten): `.some(K)` for `"shK"` (decimal digits only), `.some(nil)` for any other
    /// plain key, nil if not a plain key.
    fileprivate mutating func opsKey() -> Int?? {
        guard eat(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while let b = peek, b != UInt8(ascii: "\"") {
            if b == UInt8(ascii: "\\") { return nil }
            index += 1
        }
        guard peek != nil else { return nil }
        let end = index
        index += 1
        guard eat(UInt8(ascii: ":")) else { return nil }
        guard end - start > 2, base[start] == UInt8(ascii: "s"), base[start + 1] == UInt8(ascii: "h") else { return .some(nil) }
        var k = 0
        for i in (start + 2)..<end {
            let b = base[i]
            guard b >= 0x30 && b <= 0x39, k < 1_000_000 else { return .some(nil) }
            k = k * 10 + Int(b - 0x30)
        }
        return .some(k)
    }

    /// Exactly `pattern` after optional space.
    fileprivate mutating func literal(_ pattern: StaticPattern) -> Bool {
        skipSpace()
        return consume(pattern)
    }

    /// A string of printable ASCII without escapes: its length (UTF-16 units = bytes).
    fileprivate mutating func plainStringLength() -> Int? {
        guard eat(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while let b = peek, b != UInt8(ascii: "\"") {
            guard b >= 0x20 && b < 0x80 && b != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        guard peek != nil else { return nil }
        let length = index - start
        index += 1
        return length
    }

    /// A shared record's op: `.some(length)` if it sets the text's length, `.some(nil)` for an op the
    /// parse ignores too (`["put",{…}]` without `txt`, `["patch",{…}]` without `txt`, `["delete"]`), nil
    /// for anything this does not read.
    fileprivate mutating func sharedOp() -> Int?? {
        if literal(SharedOpsScan.put) {
            guard let length = plainStringLength(), literal(SharedOpsScan.closeOp) else { return nil }
            return .some(length)
        }
        if literal(SharedOpsScan.patchAppend) {
            guard let length = plainStringLength(), eat(UInt8(ascii: ",")) else { return nil }
            skipSpace()
            // At most 18 digits: an offset the bench could have made, never a wrapped one.
            let digitsStart = index
            guard let offset = readUInt(), index - digitsStart <= 18, literal(SharedOpsScan.closePatchOp) else { return nil }
            return .some(Int(offset) + length)
        }
        if literal(SharedOpsScan.patchPut) {
            guard let length = plainStringLength(), literal(SharedOpsScan.closePatchOp) else { return nil }
            return .some(length)
        }
        return nil
    }

    /// Past one JSON value (strings' escapes honoured, brackets matched); false if the bytes end first.
    fileprivate mutating func skipValue() -> Bool {
        skipSpace()
        var depth = 0
        while let b = peek {
            switch b {
            case UInt8(ascii: "\""):
                index += 1
                while let c = peek, c != UInt8(ascii: "\"") { index += c == UInt8(ascii: "\\") ? 2 : 1 }
                guard peek != nil else { return false }
                index += 1
                if depth == 0 { return true }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                index += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if depth == 0 { return true }  // the end of a scalar at the end of the container
                depth -= 1
                index += 1
                if depth == 0 { return true }
            case UInt8(ascii: ","):
                if depth == 0 { return true }
                index += 1
            default:
                index += 1
            }
        }
        return false
    }
}
