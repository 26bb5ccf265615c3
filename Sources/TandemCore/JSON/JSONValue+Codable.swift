/// `Codable` so that apps can keep presence states and records in their own `Codable` types, and so that a
/// `JSONValue` can sit inside one (TandemKit). The wire path never goes through `Codable`: it uses
/// `JSONParser` and `JSONWriter`, which keep number lexemes exact.
///
/// Decoding tries, in order: null, Bool, integer, floating point, string, array, object. Encoding writes a
/// number as an integer when its lexeme is one that fits `Int64`/`UInt64`, else as a `Double` (an encoder
/// cannot be handed a lexeme, so a 20-digit decimal loses precision here — and only here).
extension JSONValue: Codable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            var elements: [JSONValue] = []
            while !array.isAtEnd { elements.append(try array.decode(JSONValue.self)) }
            self = .array(elements)
            return
        }
        if let object = try? decoder.container(keyedBy: Key.self) {
            var fields: [String: JSONValue] = [:]
            for key in object.allKeys { fields[key.stringValue] = try object.decode(JSONValue.self, forKey: key) }
            self = .object(fields)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let bool = try? single.decode(Bool.self) {
            self = .bool(bool)
        } else if let int = try? single.decode(Int64.self) {
            self = .number(String(int))
        } else if let uint = try? single.decode(UInt64.self) {
            self = .number(String(uint))
        } else if let double = try? single.decode(Double.self) {
            guard double.isFinite else {
                throw DecodingError.dataCorruptedError(in: single, debugDescription: "JSON has no \(double)")
            }
            self = .number("\(double)")
        } else {
            self = .string(try single.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case .bool(let bool):
            var single = encoder.singleValueContainer()
            try single.encode(bool)
        case .number(let lexeme):
            var single = encoder.singleValueContainer()
            if let int = Int64(lexeme) {
                try single.encode(int)
            } else if let uint = UInt64(lexeme) {
                try single.encode(uint)
            } else {
                try single.encode(Double(lexeme) ?? 0)
            }
        case .string(let string):
            var single = encoder.singleValueContainer()
            try single.encode(string)
        case .array(let elements):
            var array = encoder.unkeyedContainer()
            for element in elements { try array.encode(element) }
        case .object(let fields):
            var object = encoder.container(keyedBy: Key.self)
            for (key, value) in fields { try object.encode(value, forKey: Key(stringValue: key)) }
        }
    }
}
