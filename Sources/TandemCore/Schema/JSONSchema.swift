/// A compiled JSON Schema of the subset Tandem enforces on records: `type`, `properties`, `required`,
/// `additionalProperties`, `enum`, `const`, `minimum`/`maximum`, `exclusiveMinimum`/`exclusiveMaximum`,
/// `minLength`/`maxLength`, `pattern`, `items`, `minItems`/`maxItems`, nested to any depth.
///
/// Semantics follow JSON Schema 2020-12 for these keywords (checked against the cases of the official
/// test suite): a keyword constrains only values of its own type (`maxLength` ignores numbers), lengths
/// count Unicode code points, numbers compare by exact decimal value (`1.0` is an `integer` and equals
/// `1`), `pattern` is an unanchored search, and `true`/`false` are schemas that accept everything/nothing.
///
/// Unlike a general-purpose validator, an unknown keyword is an error when the schema is compiled: a typo
/// such as `"requried"` would otherwise silently let invalid records through. Annotations (`title`,
/// `description`, `$comment`, `default`, `examples`, `$schema`, `$id`) are accepted and ignored.
public struct JSONSchema: Sendable {
    private var node: Node

    /// Compiles `value` (a schema object or a boolean).
    public init(_ value: JSONValue) throws(SchemaError) {
        node = try Node(value, at: "")
    }

    /// The first way `value` breaks the schema, or nil when it is valid. Keywords are checked in a fixed
    /// order so the same value always gets the same answer.
    public func violation(of value: JSONValue) -> SchemaViolation? {
        node.violation(of: value, at: "")
    }

    public func isValid(_ value: JSONValue) -> Bool { violation(of: value) == nil }
}

/// A value that breaks a schema: where (a JSON Pointer into the value, `""` for the value itself,
/// `/tags/2`) and what it should have been.
public struct SchemaViolation: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// A schema that cannot be compiled: where in the schema (a JSON Pointer) and why.
public struct SchemaError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { path.isEmpty ? message : "at \(path): \(message)" }
}

extension JSONSchema {
    enum Kind: String, CaseIterable, Sendable {
        case null, boolean, object, array, number, string, integer
    }

    enum Additional: Sendable {
        case allowed
        case forbidden
        /// A schema every property not in `properties` must satisfy (one element; an array breaks the
        /// recursion of a struct).
        case schema([Node])
    }

    struct Node: @unchecked Sendable {
        // @unchecked: `Regex` is not declared Sendable; a compiled schema is immutable once built and
        // only ever read, so sharing it between event loops is safe.
        var acceptsNothing = false
        var types: Set<Kind>?
        var constValue: JSONValue?
        var enumValues: [JSONValue]?
        var minimum: (value: ExactDecimal, lexeme: String)?
        var maximum: (value: ExactDecimal, lexeme: String)?
        var exclusiveMinimum: (value: ExactDecimal, lexeme: String)?
        var exclusiveMaximum: (value: ExactDecimal, lexeme: String)?
        var minLength: Int?
        var maxLength: Int?
        var pattern: (regex: Regex<AnyRegexOutput>, source: String)?
        var properties: [String: Node] = [:]
        /// `properties` keys in order, for a deterministic first violation.
        var propertyOrder: [String] = []
        var required: [String] = []
        var additional: Additional = .allowed
        var items: [Node] = []
        var minItems: Int?
        var maxItems: Int?

        static let annotations: Set<String> = ["title", "description", "$comment", "default", "examples", "$schema", "$id"]

        init(_ value: JSONValue, at path: String) throws(SchemaError) {
            switch value {
            case .bool(let accepts):
                acceptsNothing = !accepts
                return
            case .object(let keywords):
                for key in keywords.keys.sorted() where !Self.annotations.contains(key) {
                    let here = path + "/" + Self.escape(key)
                    let value = keywords[key]!
                    switch key {
                    case "type": types = try Self.types(value, at: here)
                    case "const": constValue = value
                    case "enum":
                        guard case .array(let values) = value else { throw SchemaError(path: here, message: "enum must be an array") }
                        enumValues = values
                    case "minimum": minimum = try Self.number(value, at: here)
                    case "maximum": maximum = try Self.number(value, at: here)
                    case "exclusiveMinimum": exclusiveMinimum = try Self.number(value, at: here)
                    case "exclusiveMaximum": exclusiveMaximum = try Self.number(value, at: here)
                    case "minLength": minLength = try Self.count(value, at: here)
                    case "maxLength": maxLength = try Self.count(value, at: here)
                    case "minItems": minItems = try Self.count(value, at: here)
                    case "maxItems": maxItems = try Self.count(value, at: here)
                    case "pattern":
                        guard case .string(let source) = value else { throw SchemaError(path: here, message: "pattern must be a string") }
                        do {
                            pattern = (try Regex(source), source)
                        } catch {
                            throw SchemaError(path: here, message: "pattern is not a regular expression: \(error)")
                        }
                    case "properties":
                        guard case .object(let schemas) = value else { throw SchemaError(path: here, message: "properties must be an object") }
                        propertyOrder = schemas.keys.sorted()
                        for name in propertyOrder {
                            properties[name] = try Node(schemas[name]!, at: here + "/" + Self.escape(name))
                        }
                    case "required":
                        guard case .array(let names) = value, names.allSatisfy({ $0.stringValue != nil }) else {
                            throw SchemaError(path: here, message: "required must be an array of strings")
                        }
                        required = names.compactMap(\.stringValue)
                    case "additionalProperties":
                        switch value {
                        case .bool(true): additional = .allowed
                        case .bool(false): additional = .forbidden
                        case .object: additional = .schema([try Node(value, at: here)])
                        default: throw SchemaError(path: here, message: "additionalProperties must be a boolean or a schema")
                        }
                    case "items":
                        items = [try Node(value, at: here)]
                    default:
                        throw SchemaError(
                            path: here,
                            message: "'\(key)' is not a keyword Tandem supports (type, properties, required, additionalProperties, "
                                + "enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength, pattern, "
                                + "items, minItems, maxItems)")
                    }
                }
            default:
                throw SchemaError(path: path, message: "a schema is an object or a boolean")
            }
        }

        func violation(of value: JSONValue, at path: String) -> SchemaViolation? {
            func fail(_ message: String) -> SchemaViolation { SchemaViolation(path: path, message: message) }
            if acceptsNothing { return fail("no value is allowed here") }
            if let types, !types.contains(where: { Self.matches(value, $0) }) {
                return fail("must be \(types.map(\.rawValue).sorted().joined(separator: " or ")), not \(Self.kindName(value))")
            }
            if let constValue, !value.schemaEquals(constValue) {
                return fail("must be \(constValue.serializedString.prefix(100))")
            }
            if let enumValues, !enumValues.contains(where: { value.schemaEquals($0) }) {
                return fail("must be one of \(JSONValue.array(enumValues).serializedString.prefix(200))")
            }
            switch value {
            case .number(let lexeme):
                guard let number = ExactDecimal(lexeme: lexeme) else {
                    if minimum != nil || maximum != nil || exclusiveMinimum != nil || exclusiveMaximum != nil {
                        return fail("is a number too large to compare")
                    }
                    return nil
                }
                if let minimum, number < minimum.value { return fail("must be at least \(minimum.lexeme)") }
                if let maximum, number > maximum.value { return fail("must be at most \(maximum.lexeme)") }
                if let exclusiveMinimum, number <= exclusiveMinimum.value { return fail("must be above \(exclusiveMinimum.lexeme)") }
                if let exclusiveMaximum, number >= exclusiveMaximum.value { return fail("must be below \(exclusiveMaximum.lexeme)") }
            case .string(let text):
                if minLength != nil || maxLength != nil {
                    let length = text.unicodeScalars.count
                    if let minLength, length < minLength { return fail("must be at least \(minLength) characters long") }
                    if let maxLength, length > maxLength { return fail("must be at most \(maxLength) characters long") }
                }
                if let pattern, text.firstMatch(of: pattern.regex) == nil {
                    return fail("must match the pattern \(pattern.source)")
                }
            case .array(let elements):
                if let minItems, elements.count < minItems { return fail("must have at least \(minItems) items") }
                if let maxItems, elements.count > maxItems { return fail("must have at most \(maxItems) items") }
                if let item = items.first {
                    for (index, element) in elements.enumerated() {
                        if let violation = item.violation(of: element, at: "\(path)/\(index)") { return violation }
                    }
                }
            case .object(let members):
                for name in required where members[name] == nil {
                    return fail("must have the property '\(name)'")
                }
                for name in propertyOrder {
                    if let member = members[name],
                        let violation = properties[name]!.violation(of: member, at: path + "/" + Self.escape(name))
                    {
                        return violation
                    }
                }
                switch additional {
                case .allowed:
                    break
                case .forbidden:
                    if let extra = members.keys.sorted().first(where: { properties[$0] == nil }) {
                        return fail("must not have the property '\(extra)'")
                    }
                case .schema(let schema):
                    for name in members.keys.sorted() where properties[name] == nil {
                        if let violation = schema[0].violation(of: members[name]!, at: path + "/" + Self.escape(name)) {
                            return violation
                        }
                    }
                }
            case .null, .bool:
                break
            }
            return nil
        }

        static func matches(_ value: JSONValue, _ kind: Kind) -> Bool {
            switch (value, kind) {
            case (.null, .null), (.bool, .boolean), (.object, .object), (.array, .array), (.number, .number), (.string, .string):
                return true
            case (.number(let lexeme), .integer):
                return ExactDecimal(lexeme: lexeme)?.isInteger ?? false
            default:
                return false
            }
        }

        static func kindName(_ value: JSONValue) -> String {
            switch value {
            case .null: "null"
            case .bool: "a boolean"
            case .number: "a number"
            case .string: "a string"
            case .array: "an array"
            case .object: "an object"
            }
        }

        static func types(_ value: JSONValue, at path: String) throws(SchemaError) -> Set<Kind> {
            let names: [JSONValue]
            switch value {
            case .string: names = [value]
            case .array(let list) where !list.isEmpty: names = list
            default: throw SchemaError(path: path, message: "type must be a type name or a non-empty array of them")
            }
            var kinds: Set<Kind> = []
            for name in names {
                guard let kind = name.stringValue.flatMap(Kind.init(rawValue:)) else {
                    throw SchemaError(
                        path: path, message: "\(name.serializedString) is not a type (null, boolean, object, array, number, string, integer)")
                }
                kinds.insert(kind)
            }
            return kinds
        }

        static func number(_ value: JSONValue, at path: String) throws(SchemaError) -> (value: ExactDecimal, lexeme: String) {
            guard case .number(let lexeme) = value, let number = ExactDecimal(lexeme: lexeme) else {
                throw SchemaError(path: path, message: "must be a number")
            }
            return (number, lexeme)
        }

        /// A non-negative integer; `2.0` counts (the test suite's "maxLength with a decimal").
        static func count(_ value: JSONValue, at path: String) throws(SchemaError) -> Int {
            guard case .number(let lexeme) = value, let number = ExactDecimal(lexeme: lexeme), number.isInteger,
                !(number < ExactDecimal(lexeme: "0")!), let count = Int(exactly: Double(lexeme) ?? -1), count <= Int(Int32.max)
            else {
                throw SchemaError(path: path, message: "must be a non-negative integer")
            }
            return count
        }

        /// JSON Pointer escaping (RFC 6901): `~` → `~0`, `/` → `~1`.
        static func escape(_ name: String) -> String {
            guard name.contains("~") || name.contains("/") else { return name }
            var out = ""
            for character in name {
                switch character {
                case "~": out += "~0"
                case "/": out += "~1"
                default: out.append(character)
                }
            }
            return out
        }
    }
}
