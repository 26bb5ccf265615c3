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
        var r = Reader(base: raw, index: s.index)
        r.skipSpace()
        if r.eat(UInt8(ascii: "}")) { return true }
        while true {
            guard let key = r.key() else { return false }
            if let k = key.shared, k < lengths.count {
                guard let length = r.sharedOp() else { return false }
                if let length { lengths[k] = length }
            } else {
                guard r.skipValue() else { return false }
            }
            r.skipSpace()
            if r.eat(UInt8(ascii: ",")) { continue }
            return r.eat(UInt8(ascii: "}"))
        }
    }

    private static let opsObject = StaticPattern(#""ops":{"#)

    private struct Key {
        /// K of `"shK"` (decimal digits only), else nil.
        var shared: Int?
    }

    private struct Reader {
        let base: UnsafeRawBufferPointer
        var index: Int

        var peek: UInt8? { index < base.count ? base[index] : nil }

        mutating func skipSpace() {
            while let b = peek, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { index += 1 }
        }

        mutating func eat(_ byte: UInt8) -> Bool {
            skipSpace()
            guard peek == byte else { return false }
            index += 1
            return true
        }

        /// `"name":` (the colon eaten); nil if not a plain key.
        mutating func key() -> Key? {
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
            var key = Key()
            if end - start > 2, base[start] == UInt8(ascii: "s"), base[start + 1] == UInt8(ascii: "h") {
                var k = 0
                var digits = true
                for i in (start + 2)..<end {
                    let b = base[i]
                    guard b >= 0x30 && b <= 0x39, k < 1_000_000 else { digits = false; break }
                    k = k * 10 + Int(b - 0x30)
                }
                if digits { key.shared = k }
            }
            return key
        }

        /// Exactly `text` (after optional space).
        mutating func literal(_ text: StaticString) -> Bool {
            skipSpace()
            let n = text.utf8CodeUnitCount
            guard index + n <= base.count else { return false }
            let p = text.utf8Start
            for i in 0..<n where base[index + i] != p[i] { return false }
            index += n
            return true
        }

        /// A string of printable ASCII without escapes: its length (UTF-16 units = bytes).
        mutating func plainString() -> Int? {
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

        mutating func unsigned() -> Int? {
            skipSpace()
            var value = 0
            let start = index
            while let b = peek, b >= 0x30 && b <= 0x39, value < Int.max / 20 {
                value = value * 10 + Int(b - 0x30)
                index += 1
            }
            return index > start ? value : nil
        }

        /// A shared record's op: `.some(length)` if it sets the text's length, `.some(nil)` for an op the
        /// parse ignores too (`["put",{…}]` without `txt`, `["patch",{…}]` without `txt`, `["delete"]`), nil
        /// for anything this does not read.
        mutating func sharedOp() -> Int?? {
            if literal(#"["put",{"txt":"#) {
                guard let length = plainString(), literal("}]") else { return nil }
                return .some(length)
            }
            if literal(#"["patch",{"txt":["append","#) {
                guard let length = plainString(), eat(UInt8(ascii: ",")), let offset = unsigned(), literal("]}]") else {
                    return nil
                }
                return .some(offset + length)
            }
            if literal(#"["patch",{"txt":["put","#) {
                guard let length = plainString(), literal("]}]") else { return nil }
                return .some(length)
            }
            return nil
        }

        /// Past one JSON value (strings' escapes honoured, brackets matched); false if the bytes end first.
        mutating func skipValue() -> Bool {
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
}
