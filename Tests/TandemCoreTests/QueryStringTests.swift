import Testing
import TandemCore

/// The handshake's request-target parser works on bytes (found by Fuzz/fuzz-query-string: splitting a
/// String splits on Characters, and `?`/`&`/`=` followed by a combining mark stopped being separators).
@Suite struct QueryStringTests {
    @Test func splitsPathAndPercentDecodesPairs() {
        let (path, query) = QueryString.parse(uri: "/v1/ws?user=al%20ice&name=A+B&resume=&flag")
        #expect(path == "/v1/ws")
        #expect(query == ["user": "al ice", "name": "A B", "resume": "", "flag": ""])
        #expect(QueryString.parse(uri: "/v1/ws").query.isEmpty)
    }

    @Test func separatorsBeforeCombiningMarksStillSeparate() {
        let (path, query) = QueryString.parse(uri: "/v1/ws?\u{301}user=x&\u{301}b=\u{301}")
        #expect(path == "/v1/ws")
        #expect(query == ["\u{301}user": "x", "\u{301}b": "\u{301}"])
    }

    @Test func malformedEscapesAndInvalidUTF8AreSkipped() {
        let (_, query) = QueryString.parse(uri: "/p?a=%zz&b=%ff&c=%4&d=ok")
        #expect(query == ["d": "ok"])
    }
}
