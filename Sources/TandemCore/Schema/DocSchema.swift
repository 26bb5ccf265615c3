/// The record schemas of the docs whose ids match `docs` (one file under `--schema-dir`):
///
/// ```json
/// {"docs": ["board:*"], "version": 3, "otherRecords": "reject",
///  "records": [
///    {"name": "note",  "idPrefix": "note:", "schema": {"type": "object", "required": ["text"], …}},
///    {"name": "shape", "type": "shape",     "schema": {…}}]}
/// ```
///
/// A record is checked against the first record type that selects it: by its id starting with
/// `idPrefix`, or by its own `type` field equal to `type` (tldraw-style records carry their type). A
/// record no type selects is refused unless `otherRecords` is `"allow"`: with schemas registered, an
/// unknown record is more likely a client bug than a new feature. Removing a record is always allowed.
/// `version` lets a client say which schema it was built for (`schema_mismatch` otherwise).
public struct DocSchema: Sendable {
    public struct RecordType: Sendable {
        public var name: String
        public var idPrefix: String?
        public var typeField: String?
        public var schema: JSONSchema
    }

    /// Doc id globs (`*` any run of characters, `?` one: the syntax of token grants).
    public var docs: [String]
    public var version: Int
    /// Versions are small integers an operator bumps; the bound keeps them exact in every JSON client.
    public static let maxVersion = 1_000_000_000
    public var recordTypes: [RecordType]
    public var allowsOtherRecords: Bool
    /// Where it came from (the file name), for errors and `/api/status`.
    public var source: String

    public func applies(to doc: String) -> Bool { docs.contains { DocAccess.glob($0, matches: doc) } }

    /// Why `value` may not be the record `id`, or nil. `value` nil (the record removed) is always fine.
    public func violation(record id: String, value: JSONValue?) -> RecordViolation? {
        guard let value else { return nil }
        let recordTypeField = value.objectValue?["type"]?.stringValue
        for type in recordTypes {
            let selected = type.idPrefix.map { id.hasPrefix($0) } ?? false || (type.typeField != nil && type.typeField == recordTypeField)
            guard selected else { continue }
            guard let violation = type.schema.violation(of: value) else { return nil }
            return RecordViolation(record: id, recordType: type.name, path: violation.path, message: violation.message)
        }
        if allowsOtherRecords { return nil }
        return RecordViolation(
            record: id, recordType: nil, path: "",
            message: "no record type of schema version \(version) (\(source)) matches this record")
    }
}

/// A record a push would leave invalid: which, of which type, where in it and why (`discard` reason
/// `invalid`).
public struct RecordViolation: Error, Equatable, Sendable, CustomStringConvertible {
    public var record: String
    public var recordType: String?
    public var path: String
    public var message: String

    public var description: String {
        let type = recordType.map { " (\($0))" } ?? ""
        return "record '\(record)'\(type)\(path.isEmpty ? "" : " at \(path)"): \(message)"
    }
}

extension DocSchema {
    /// Reads a schema file's JSON. `source` names it in errors.
    public init(json value: JSONValue, source: String) throws(SchemaError) {
        func error(_ path: String, _ message: String) -> SchemaError { SchemaError(path: path, message: "\(source): \(message)") }
        guard case .object(let top) = value else { throw error("", "a schema file is a JSON object") }
        let known: Set<String> = ["docs", "version", "records", "otherRecords", "$comment", "description"]
        if let unknown = top.keys.sorted().first(where: { !known.contains($0) }) {
            throw error("/\(unknown)", "unknown field '\(unknown)' (docs, version, records, otherRecords)")
        }
        switch top["docs"] {
        case .string(let glob)?: docs = [glob]
        case .array(let globs)? where !globs.isEmpty && globs.allSatisfy({ $0.stringValue?.isEmpty == false }):
            docs = globs.compactMap(\.stringValue)
        default: throw error("/docs", "docs must be a doc id glob or a non-empty array of them")
        }
        guard let version = top["version"]?.intValue, version >= 1, version <= Self.maxVersion else {
            throw error("/version", "version must be an integer of at least 1")
        }
        self.version = version
        switch top["otherRecords"] {
        case nil, .string("reject")?: allowsOtherRecords = false
        case .string("allow")?: allowsOtherRecords = true
        default: throw error("/otherRecords", "otherRecords must be \"reject\" (the default) or \"allow\"")
        }
        guard case .array(let entries)? = top["records"], !entries.isEmpty else {
            throw error("/records", "records must be a non-empty array of record types")
        }
        var types: [RecordType] = []
        for (index, entry) in entries.enumerated() {
            let here = "/records/\(index)"
            guard case .object(let fields) = entry else { throw error(here, "a record type is an object") }
            if let unknown = fields.keys.sorted().first(where: { !["name", "idPrefix", "type", "schema"].contains($0) }) {
                throw error("\(here)/\(unknown)", "unknown field '\(unknown)' (name, idPrefix, type, schema)")
            }
            guard let name = fields["name"]?.stringValue, !name.isEmpty else { throw error("\(here)/name", "name must be a non-empty string") }
            let idPrefix = fields["idPrefix"]?.stringValue
            let typeField = fields["type"]?.stringValue
            guard (idPrefix == nil) != (typeField == nil), idPrefix?.isEmpty != true, typeField?.isEmpty != true else {
                throw error(here, "a record type selects records by exactly one of idPrefix or type (a non-empty string)")
            }
            guard let schemaValue = fields["schema"] else { throw error("\(here)/schema", "schema is missing") }
            let schema: JSONSchema
            do {
                schema = try JSONSchema(schemaValue)
            } catch let failure {
                throw error("\(here)/schema\(failure.path)", failure.message)
            }
            types.append(RecordType(name: name, idPrefix: idPrefix, typeField: typeField, schema: schema))
        }
        recordTypes = types
        self.source = source
    }
}

/// Every schema file of `--schema-dir`, in file-name order: a doc is checked against the first schema
/// whose `docs` match it (none: any record is accepted, as without schemas).
public struct SchemaRegistry: Sendable {
    public private(set) var schemas: [DocSchema]

    public init(schemas: [DocSchema] = []) { self.schemas = schemas }

    public static let empty = SchemaRegistry()

    public func schema(for doc: String) -> DocSchema? { schemas.first { $0.applies(to: doc) } }
}
