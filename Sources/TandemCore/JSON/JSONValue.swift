/// A JSON document held exactly as Tandem needs it.
///
/// Numbers keep their source lexeme (validated against RFC 8259) so values pass through Tandem without
/// precision loss, and objects serialize with sorted keys so equal values always have equal bytes — the
/// sync relay's convergence guarantee is stated byte for byte.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// The number's RFC 8259 lexeme, e.g. `-12.5e3`.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The value as a non-negative integer that fits in `UInt64`, if it is one (`3`, not `3.0` or `-1`).
    public var uint64Value: UInt64? {
        guard case .number(let lexeme) = self, lexeme.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return nil
        }
        return UInt64(lexeme)
    }

    /// The value as an integer that fits in `Int`, if it is one.
    public var intValue: Int? {
        guard case .number(let lexeme) = self else { return nil }
        return Int(lexeme)
    }

    public var isObject: Bool { objectValue != nil }

    /// Compact serialization with sorted object keys.
    public var serialized: [UInt8] {
        var writer = JSONWriter()
        writer.write(self)
        return writer.bytes
    }

    public var serializedString: String { String(decoding: serialized, as: UTF8.self) }

    public static func number(_ value: Int) -> JSONValue { .number(String(value)) }
    public static func number(_ value: UInt64) -> JSONValue { .number(String(value)) }
}
