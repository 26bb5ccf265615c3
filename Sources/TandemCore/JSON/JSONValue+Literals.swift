/// Literals, so that clients (TandemKit) can write states and records as `["cursor": [10, 20]]`.
///
/// Deliberately not `ExpressibleByNilLiteral`: `nil` for a `JSONValue?` (an absent value, e.g. a push
/// answer's `applied`) would then be ambiguous and can silently become `.some(.null)`; write `.null`.
extension JSONValue: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(String(value)) }
    /// A `Double` literal; its shortest round-trip spelling is a valid JSON number.
    public init(floatLiteral value: Double) {
        precondition(value.isFinite, "JSON has no \(value)")
        self = .number("\(value)")
    }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
