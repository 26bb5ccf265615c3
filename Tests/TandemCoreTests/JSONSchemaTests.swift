import Testing
@testable import TandemCore

/// The JSON Schema subset records are checked against. The cases follow the edge cases of the official
/// JSON-Schema-Test-Suite (draft 2020-12) for each supported keyword, written anew here.
@Suite struct JSONSchemaTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var schema: String
        var valid: [String]
        var invalid: [String]
        var testDescription: String { schema }
    }

    static let cases: [Case] = [
        // type
        Case(schema: #"{"type":"integer"}"#, valid: ["1", "1.0", "-0", "1e2", "0.0e0"], invalid: ["1.1", #""1""#, "{}", "[]", "true", "null", "1.5e0"]),
        Case(schema: #"{"type":"number"}"#, valid: ["1", "1.0", "1.1", "-2e-3"], invalid: [#""1""#, "{}", "[]", "true", "null"]),
        Case(schema: #"{"type":"string"}"#, valid: [#""foo""#, #""1""#, #""""#], invalid: ["1", "1.1", "{}", "[]", "true", "null"]),
        Case(schema: #"{"type":"object"}"#, valid: ["{}"], invalid: ["1", #""foo""#, "[]", "true", "null"]),
        Case(schema: #"{"type":"array"}"#, valid: ["[]"], invalid: ["1", #""foo""#, "{}", "true", "null"]),
        Case(schema: #"{"type":"boolean"}"#, valid: ["true", "false"], invalid: ["1", "0", #""""#, "{}", "[]", "null"]),
        Case(schema: #"{"type":"null"}"#, valid: ["null"], invalid: ["0", "false", #""""#, "{}", "[]"]),
        Case(schema: #"{"type":["integer","string"]}"#, valid: ["1", #""foo""#], invalid: ["1.5", "{}", "null"]),
        // const: by value, key order irrelevant, booleans never numbers
        Case(schema: #"{"const":2}"#, valid: ["2", "2.0", "20e-1"], invalid: ["5", #""a""#]),
        Case(schema: #"{"const":{"foo":"bar","baz":"bax"}}"#, valid: [#"{"baz":"bax","foo":"bar"}"#], invalid: [#"{"foo":"bar"}"#, "[1,2]"]),
        Case(schema: #"{"const":[{"foo":"bar"}]}"#, valid: [#"[{"foo":"bar"}]"#], invalid: ["[2]", "[1,2,3]"]),
        Case(schema: #"{"const":null}"#, valid: ["null"], invalid: ["0"]),
        Case(schema: #"{"const":false}"#, valid: ["false"], invalid: ["0", "0.0"]),
        Case(schema: #"{"const":[true]}"#, valid: ["[true]"], invalid: ["[1]", "[1.0]"]),
        Case(schema: #"{"const":0}"#, valid: ["0", "0.0", "-0"], invalid: ["false", "{}", "[]", #""""#]),
        Case(schema: #"{"const":-2.0}"#, valid: ["-2", "-2.0"], invalid: ["2", "2.0", "-2.00001"]),
        Case(schema: #"{"const":9007199254740992}"#, valid: ["9007199254740992"], invalid: ["9007199254740991", "9007199254740993"]),
        // enum
        Case(schema: #"{"enum":[1,2,3]}"#, valid: ["1", "3.0"], invalid: ["4"]),
        Case(schema: #"{"enum":[6,"foo",[],true,{"foo":12}]}"#, valid: ["[]", #"{"foo":12}"#, "true"], invalid: ["null", #"{"foo":false}"#, #"{"foo":12,"boo":42}"#]),
        Case(schema: #"{"enum":[6,null]}"#, valid: ["null", "6"], invalid: [#""test""#]),
        Case(schema: #"{"enum":["foo\nbar","foo\rbar"]}"#, valid: [#""foo\nbar""#, #""foo\rbar""#], invalid: [#""abc""#]),
        Case(schema: #"{"enum":[[false]]}"#, valid: ["[false]"], invalid: ["[0]", "[0.0]"]),
        Case(schema: #"{"enum":[0]}"#, valid: ["0", "0.0"], invalid: ["false"]),
        Case(schema: #"{"enum":["hello\u0000there"]}"#, valid: [#""hello\u0000there""#], invalid: [#""hellothere""#]),
        Case(schema: #"{"enum":[]}"#, valid: [], invalid: ["1", "null", "{}"]),
        // minimum / maximum / exclusive
        Case(schema: #"{"minimum":1.1}"#, valid: ["2.6", "1.1", "1.10", #""x""#], invalid: ["0.6", "1.0999999999999999999"]),
        Case(schema: #"{"minimum":-2}"#, valid: ["-1", "0", "-2", "-2.0"], invalid: ["-2.0001", "-3"]),
        Case(schema: #"{"maximum":3.0}"#, valid: ["2.6", "3", "3.0", #""x""#], invalid: ["3.5", "1e1"]),
        Case(schema: #"{"maximum":300}"#, valid: ["300", "300.00", "3e2"], invalid: ["300.5", "3.0001e2"]),
        Case(schema: #"{"exclusiveMinimum":1.1}"#, valid: ["1.2", #""x""#], invalid: ["1.1", "0.6"]),
        Case(schema: #"{"exclusiveMaximum":3.0}"#, valid: ["2.2"], invalid: ["3.0", "3", "3.5"]),
        Case(schema: #"{"minimum":9007199254740993}"#, valid: ["9007199254740993", "1e16"], invalid: ["9007199254740992"]),
        // lengths count code points
        Case(schema: #"{"maxLength":2}"#, valid: [#""f""#, #""fo""#, "100", #""\ud83d\udca9\ud83d\udca9""#], invalid: [#""foo""#]),
        Case(schema: #"{"maxLength":2.0}"#, valid: [#""f""#], invalid: [#""foo""#]),
        Case(schema: #"{"minLength":2}"#, valid: [#""foo""#, #""fo""#, "1"], invalid: [#""f""#, #""\ud83d\udca9""#]),
        // pattern: unanchored, Unicode
        Case(schema: #"{"pattern":"^a*$"}"#, valid: [#""aaa""#, "true", "123", "{}", "[]", "null"], invalid: [#""abc""#]),
        Case(schema: #"{"pattern":"a+"}"#, valid: [#""xxaayy""#], invalid: [#""xyz""#]),
        Case(schema: #"{"pattern":"^\\p{Letter}+$"}"#, valid: [#""Hello""#, #""\u03c0""#], invalid: [#""123""#]),
        // items / minItems / maxItems
        Case(schema: #"{"items":{"type":"integer"}}"#, valid: ["[1,2,3]", "[]", #"{"foo":"bar"}"#], invalid: [#"[1,"x"]"#]),
        Case(schema: #"{"items":false}"#, valid: ["[]"], invalid: ["[1]"]),
        Case(schema: #"{"items":true}"#, valid: [#"[1,"foo",true]"#], invalid: []),
        Case(schema: #"{"items":{"items":{"type":"string"}}}"#, valid: [#"[["a"],[]]"#], invalid: [#"[["a"],[1]]"#]),
        Case(schema: #"{"minItems":1}"#, valid: ["[1,2]", "[1]", #""""#], invalid: ["[]"]),
        Case(schema: #"{"maxItems":2}"#, valid: ["[1]", "[1,2]", #""foobar""#], invalid: ["[1,2,3]"]),
        // objects
        Case(schema: #"{"required":["foo"]}"#, valid: [#"{"foo":1}"#, "[]", #""""#, "12"], invalid: [#"{"bar":1}"#]),
        Case(schema: #"{"required":["__proto__","constructor"]}"#, valid: [#"{"__proto__":1,"constructor":2}"#], invalid: [#"{"__proto__":1}"#]),
        Case(schema: #"{"properties":{"foo":{"type":"integer"},"bar":{"type":"string"}}}"#,
             valid: [#"{"foo":1,"bar":"baz"}"#, #"{"foo":1}"#, #"{"quux":[]}"#, "[]", "12"], invalid: [#"{"foo":1,"bar":{}}"#, #"{"foo":[],"bar":{}}"#]),
        Case(schema: #"{"properties":{"foo\nbar":{"type":"number"},"foo\"bar":{"type":"number"}}}"#,
             valid: [#"{"foo\nbar":1,"foo\"bar":1}"#], invalid: [#"{"foo\nbar":"1"}"#, #"{"foo\"bar":"1"}"#]),
        Case(schema: #"{"properties":{"foo":{}},"additionalProperties":false}"#, valid: [#"{"foo":1}"#, "[1,2,3]", "12"], invalid: [#"{"foo":1,"bar":2}"#]),
        Case(schema: #"{"properties":{"foo":{}},"additionalProperties":{"type":"boolean"}}"#,
             valid: [#"{"foo":1,"bar":true}"#], invalid: [#"{"foo":1,"bar":2}"#]),
        Case(schema: #"{"additionalProperties":{"type":"boolean"}}"#, valid: [#"{"foo":true}"#], invalid: [#"{"foo":1}"#]),
        Case(schema: #"{"properties":{"foo":{"type":"null"}}}"#, valid: [#"{"foo":null}"#], invalid: [#"{"foo":0}"#]),
        // boolean schemas, annotations, nesting
        Case(schema: "true", valid: ["1", "null", "{}"], invalid: []),
        Case(schema: "false", valid: [], invalid: ["1", "null", "{}"]),
        Case(schema: #"{"title":"x","description":"y","$comment":"z","default":1,"examples":[1]}"#, valid: ["1", #""a""#], invalid: []),
        Case(schema: #"{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"array","items":{"type":"object","required":["c"]}}}}}}"#,
             valid: [#"{"a":{"b":[{"c":1}]}}"#], invalid: [#"{"a":{"b":[{"c":1},{}]}}"#]),
    ]

    @Test(arguments: cases)
    func keywordsFollowJSONSchema(_ testCase: Case) throws {
        let schema = try JSONSchema(try JSONParser.parse(testCase.schema))
        for text in testCase.valid {
            let value = try JSONParser.parse(text)
            #expect(schema.violation(of: value) == nil, "\(text) should be valid")
        }
        for text in testCase.invalid {
            let value = try JSONParser.parse(text)
            #expect(schema.violation(of: value) != nil, "\(text) should be invalid")
        }
    }

    @Test func aViolationSaysWhereAndWhy() throws {
        let schema = try JSONSchema(try JSONParser.parse(
            #"{"type":"object","required":["title"],"properties":{"title":{"type":"string","maxLength":5},"tags":{"items":{"enum":["a","b"]}},"a/b":{"type":"integer"}},"additionalProperties":false}"#))
        func violation(_ text: String) throws -> String? { schema.violation(of: try JSONParser.parse(text))?.description }
        #expect(try violation(#"{"title":"toolong"}"#) == "/title: must be at most 5 characters long")
        #expect(try violation(#"{"title":"x","tags":["a","c"]}"#) == #"/tags/1: must be one of ["a","b"]"#)
        #expect(try violation(#"{"tags":[]}"#) == "must have the property 'title'")
        #expect(try violation(#"{"title":"x","extra":1}"#) == "must not have the property 'extra'")
        #expect(try violation(#"{"title":"x","a/b":1.5}"#) == "/a~1b: must be integer, not a number")
        #expect(try violation("[]") == "must be object, not an array")
    }

    @Test(arguments: [
        (#"{"requried":["a"]}"#, "/requried"), (#"{"type":"int"}"#, "/type"), (#"{"type":[]}"#, "/type"),
        (#"{"minLength":-1}"#, "/minLength"), (#"{"maxItems":1.5}"#, "/maxItems"), (#"{"pattern":"("}"#, "/pattern"),
        (#"{"properties":{"a":{"minimum":"1"}}}"#, "/properties/a/minimum"), (#"{"enum":1}"#, "/enum"),
        (#"{"required":[1]}"#, "/required"), (#"{"additionalProperties":1}"#, "/additionalProperties"), ("1", ""),
        (#"{"items":{"oneOf":[]}}"#, "/items/oneOf"),
    ])
    func schemasThatCannotBeEnforcedAreRefusedWithTheirPlace(schema: String, path: String) throws {
        let value = try JSONParser.parse(schema)
        #expect { try JSONSchema(value) } throws: { ($0 as? SchemaError)?.path == path }
    }

    @Test func exactDecimalsOrderByValue() {
        let ordered = ["-1e3", "-2.0001", "-2", "-0.5", "0", "1e-9", "0.1", "1", "1.0000000000000000001", "9007199254740992", "9007199254740993", "1e400"]
        let numbers = ordered.map { ExactDecimal(lexeme: $0)! }
        for (a, b) in zip(numbers, numbers.dropFirst()) { #expect(a < b) }
        #expect(ExactDecimal(lexeme: "-0") == ExactDecimal(lexeme: "0.000e5"))
        #expect(ExactDecimal(lexeme: "12.50") == ExactDecimal(lexeme: "1.25e1"))
        #expect(ExactDecimal(lexeme: "1e9999999999") == nil, "an exponent that does not fit is not compared")
    }
}

@Suite struct DocSchemaTests {
    static let file = #"""
        {"docs": ["board:*", "wall"], "version": 2,
         "records": [
           {"name": "note", "idPrefix": "note:", "schema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 10}}}},
           {"name": "shape", "type": "shape", "schema": {"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}}]}
        """#

    @Test func recordsAreCheckedByIdPrefixOrTypeFieldAndOthersRefused() throws {
        let schema = try DocSchema(json: try JSONParser.parse(Self.file), source: "board.json")
        #expect(schema.applies(to: "board:42") && schema.applies(to: "wall") && !schema.applies(to: "walls"))
        #expect(schema.violation(record: "note:1", value: try JSONParser.parse(#"{"text":"hi"}"#)) == nil)
        #expect(schema.violation(record: "note:1", value: try JSONParser.parse(#"{"text":"far too long"}"#))?.description
            == "record 'note:1' (note) at /text: must be at most 10 characters long")
        #expect(schema.violation(record: "s1", value: try JSONParser.parse(#"{"type":"shape","x":1}"#)) == nil)
        #expect(schema.violation(record: "s1", value: try JSONParser.parse(#"{"type":"shape"}"#))?.recordType == "shape")
        #expect(schema.violation(record: "other", value: .object([:]))?.message.contains("no record type") == true)
        #expect(schema.violation(record: "note:1", value: nil) == nil, "removing a record is always allowed")
        var open = schema
        open.allowsOtherRecords = true
        #expect(open.violation(record: "other", value: .object([:])) == nil)
    }

    @Test(arguments: [
        #"{"docs":"a","version":1,"records":[]}"#, #"{"docs":[],"version":1,"records":[{"name":"n","idPrefix":"x","schema":true}]}"#,
        #"{"docs":"a","version":0,"records":[{"name":"n","idPrefix":"x","schema":true}]}"#,
        #"{"docs":"a","version":1,"records":[{"name":"n","schema":true}]}"#,
        #"{"docs":"a","version":1,"records":[{"name":"n","idPrefix":"x","type":"y","schema":true}]}"#,
        #"{"docs":"a","version":1,"records":[{"name":"n","idPrefix":"x","schema":{"minimun":1}}]}"#,
        #"{"docs":"a","version":1,"otherRecords":"maybe","records":[{"name":"n","idPrefix":"x","schema":true}]}"#,
        #"{"docs":"a","version":1,"record":[]}"#,
    ])
    func badFilesAreRefusedNamingTheFile(text: String) throws {
        let value = try JSONParser.parse(text)
        #expect { try DocSchema(json: value, source: "bad.json") } throws: { ($0 as? SchemaError)?.message.hasPrefix("bad.json: ") == true }
    }

    @Test func aDocUsesTheFirstSchemaThatMatches() throws {
        let board = try DocSchema(json: try JSONParser.parse(Self.file), source: "a.json")
        let any = try DocSchema(
            json: try JSONParser.parse(#"{"docs":"*","version":1,"otherRecords":"allow","records":[{"name":"n","idPrefix":"x","schema":true}]}"#),
            source: "z.json")
        let registry = SchemaRegistry(schemas: [board, any])
        #expect(registry.schema(for: "board:1")?.source == "a.json")
        #expect(registry.schema(for: "elsewhere")?.source == "z.json")
        #expect(SchemaRegistry.empty.schema(for: "board:1") == nil)
    }
}
