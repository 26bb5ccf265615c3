import Foundation
import TandemCore

/// A JSON value held exactly (numbers keep their lexeme, objects serialize with sorted keys). Presence states
/// and records are JSON objects; `Codable` types convert with ``JSONValue/init(encoding:)`` and
/// ``JSONValue/decode(_:)``.
public typealias JSONValue = TandemCore.JSONValue
/// OPS of protocol v1 (`{ID: ["put", RECORD] | ["patch", DIFF] | ["remove"]}`), the unit of a push.
public typealias Ops = TandemCore.Ops
/// What an ``Ops`` does to one record: `.put(record)`, `.patch(Diff)` or `.remove`.
public typealias RecordOp = TandemCore.RecordOp
/// Field changes of a `patch`: `{FIELD: FieldOp}`.
public typealias Diff = TandemCore.Diff
/// What a ``Diff`` does to one field: `.put(value)`, `.delete`, `.patch(Diff)` or `.append(value, offset:)`.
public typealias FieldOp = TandemCore.FieldOp

/// How a session takes part in a doc's presence (the join's `"presence"`): `.full` (shown, sees others),
/// `.hidden` (sees others, shown to no one) or `.none` (no presence either way: no deltas at all).
public typealias PresenceMode = TandemCore.PresenceMode

/// Thrown by ``JSONValue/init(encoding:)`` and ``JSONValue/decode(_:)``.
public struct JSONConversionError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension JSONValue {
    /// The JSON of an `Encodable` value (through `JSONEncoder`, then parsed exactly).
    public init<T: Encodable>(encoding value: T) throws(JSONConversionError) {
        let data: Data
        do {
            data = try JSONEncoder().encode(value)
        } catch {
            throw JSONConversionError(description: "cannot encode \(T.self): \(error)")
        }
        do {
            self = try JSONParser.parse(Array(data), maxDepth: Wire.maxInboundDepth)
        } catch {
            throw JSONConversionError(description: "encoded \(T.self) is not JSON Tandem reads: \(error)")
        }
    }

    /// Decodes this value as `T` (through `JSONDecoder`).
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws(JSONConversionError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(self.serialized))
        } catch {
            throw JSONConversionError(description: "cannot decode \(T.self) from \(self.serializedString): \(error)")
        }
    }

    /// The value of field `key` of an object (nil for other values and missing fields).
    public subscript(key: String) -> JSONValue? {
        objectValue?[key]
    }
}
