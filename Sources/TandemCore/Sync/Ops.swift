/// OPS of protocol v1: `{ID: ["put", RECORD] | ["patch", DIFF] | ["remove"]}`.
public struct Ops: Equatable, Sendable {
    public var records: [String: RecordOp]

    public init(_ records: [String: RecordOp]) { self.records = records }

    public var isEmpty: Bool { records.isEmpty }

    public var json: JSONValue { .object(records.mapValues(\.json)) }

    /// Largest record id, in UTF-8 bytes.
    public static let maxRecordIDBytes = 256

    /// Parses and validates OPS. Throws `bad_message` with a path to the offending part.
    public init(json: JSONValue) throws(ProtocolError) {
        guard case .object(let entries) = json else { throw ProtocolError(.badMessage, "ops must be an object") }
        var records: [String: RecordOp] = [:]
        for (id, value) in entries {
            guard !id.isEmpty, id.utf8.count <= Self.maxRecordIDBytes else {
                throw ProtocolError(.badMessage, "record ids are 1–\(Self.maxRecordIDBytes) bytes")
            }
            records[id] = try RecordOp(json: value, path: excerpt(id))
        }
        self.records = records
    }
}

/// What happens to one record.
public enum RecordOp: Equatable, Sendable {
    /// Replace (or create) the record.
    case put(JSONValue)
    /// Change some fields.
    case patch(Diff)
    /// Delete the record (leaves a tombstone).
    case remove

    public var json: JSONValue {
        switch self {
        case .put(let record): return .array([.string("put"), record])
        case .patch(let diff): return .array([.string("patch"), diff.json])
        case .remove: return .array([.string("remove")])
        }
    }

    // `path` names the op in an error only: made when one is thrown (building it for every record and
    // field of every push — an excerpt, an interpolation — was ~1,500 instructions a field, callgrind).
    init(json: JSONValue, path: @autoclosure () -> String) throws(ProtocolError) {
        guard case .array(let parts) = json, let verb = parts.first?.stringValue else {
            throw ProtocolError(.badMessage, "ops.\(path()) must be [\"put\", RECORD], [\"patch\", DIFF] or [\"remove\"]")
        }
        switch (verb, parts.count) {
        case ("put", 2):
            guard parts[1].isObject else { throw ProtocolError(.badMessage, "ops.\(path()): a record must be an object") }
            self = .put(parts[1])
        case ("patch", 2):
            self = .patch(try Diff(json: parts[1], path: path()))
        case ("remove", 1):
            self = .remove
        default:
            throw ProtocolError(.badMessage, "ops.\(path()): unknown op \"\(excerpt(verb, maxScalars: 32))\" or wrong arity")
        }
    }
}

/// DIFF of protocol v1: `{FIELD: ["put", VALUE] | ["delete"] | ["patch", DIFF] | ["append", VALUE, OFFSET]}`.
public struct Diff: Equatable, Sendable {
    public var fields: [String: FieldOp]

    public init(_ fields: [String: FieldOp]) { self.fields = fields }

    public var json: JSONValue { .object(fields.mapValues(\.json)) }

    init(json: JSONValue, path: @autoclosure () -> String) throws(ProtocolError) {
        guard case .object(let entries) = json else {
            throw ProtocolError(.badMessage, "\(path()): a diff must be an object")
        }
        var fields: [String: FieldOp] = [:]
        for (field, value) in entries {
            // Paths quote client-chosen names, so they are cut short (at most a few hundred bytes per message).
            fields[field] = try FieldOp(json: value, path: excerpt("\(path()).\(excerpt(field, maxScalars: 32))", maxScalars: 96))
        }
        self.fields = fields
    }
}

/// What happens to one field of a record (or of a nested object).
public indirect enum FieldOp: Equatable, Sendable {
    case put(JSONValue)
    case delete
    case patch(Diff)
    /// Append a string to a string or an array's elements to an array; valid only when `offset` equals
    /// the current length (UTF-16 code units for strings, as JavaScript counts; elements for arrays).
    case append(JSONValue, offset: Int)

    public var json: JSONValue {
        switch self {
        case .put(let value): return .array([.string("put"), value])
        case .delete: return .array([.string("delete")])
        case .patch(let diff): return .array([.string("patch"), diff.json])
        case .append(let value, let offset): return .array([.string("append"), value, .number(offset)])
        }
    }

    init(json: JSONValue, path: @autoclosure () -> String) throws(ProtocolError) {
        guard case .array(let parts) = json, let verb = parts.first?.stringValue else {
            throw ProtocolError(.badMessage, "\(path()) must be [\"put\", V], [\"delete\"], [\"patch\", DIFF] or [\"append\", V, OFFSET]")
        }
        switch (verb, parts.count) {
        case ("put", 2):
            self = .put(parts[1])
        case ("delete", 1):
            self = .delete
        case ("patch", 2):
            self = .patch(try Diff(json: parts[1], path: path()))
        case ("append", 3):
            let value = parts[1]
            guard value.stringValue != nil || value.arrayValue != nil else {
                throw ProtocolError(.badMessage, "\(path()): append takes a string or an array")
            }
            guard let offset = parts[2].intValue, offset >= 0 else {
                throw ProtocolError(.badMessage, "\(path()): append offset must be a non-negative integer")
            }
            self = .append(value, offset: offset)
        default:
            throw ProtocolError(.badMessage, "\(path()): unknown field op \"\(excerpt(verb, maxScalars: 32))\" or wrong arity")
        }
    }
}
