import Testing

@testable import tandem_bench

/// `SharedOpsScan` must find the lengths `SyncEditor.applyShared`'s parse finds, and say so when it cannot.
@Suite("SharedOpsScan: shared records' lengths from a patch by a byte scan")
struct SharedOpsScanTests {
    func scan(_ message: String, records: Int = 3) -> (read: Bool, lengths: [Int]) {
        var lengths = Array(repeating: -1, count: records)
        let read = Array(message.utf8).withUnsafeBytes { SharedOpsScan.apply($0, into: &lengths) }
        return (read, lengths)
    }

    @Test func appendsPutsAndOtherRecordsAreRead() {
        let patch = #"{"t":"patch","doc":"bench-x-s0","clock":7,"ops":{"ed3":["patch",{"f":["put",12]}],"#
            + #""sh0":["patch",{"txt":["append","abab",10]}],"sh2":["put",{"txt":"abc"}]},"by":"shy-e3","id":12}"#
        let r = scan(patch)
        #expect(r.read)
        #expect(r.lengths == [14, -1, 3])
        let put = scan(#"{"t":"patch","clock":2,"ops":{"sh1":["patch",{"txt":["put","abcdef"]}]},"by":"e1"}"#)
        #expect(put.read && put.lengths == [-1, 6, -1])
        // A rebase's result: the ops the server applied instead.
        let rebase = scan(#"{"t":"result","doc":"d","id":40,"action":"rebase","clock":9,"ops":{"sh0":["patch",{"txt":["append","ab",22]}]}}"#)
        #expect(rebase.read && rebase.lengths == [24, -1, -1])
        #expect(scan(#"{"t":"patch","clock":1,"ops":{},"by":"e"}"#) == (true, [-1, -1, -1]))
    }

    @Test func aRecordPastTheSharedOnesIsSkippedAsTheParseSkipsIt() {
        let r = scan(#"{"t":"patch","clock":1,"ops":{"sh7":["patch",{"txt":["append","ab",1]}],"sh1":["put",{"txt":""}]},"by":"e"}"#)
        #expect(r.read && r.lengths == [-1, 0, -1])
    }

    @Test(arguments: [
        #"{"t":"patch","clock":1,"ops":{"sh0":["patch",{"txt":["append","a\"b",1]}]},"by":"e"}"#,  // an escape
        #"{"t":"patch","clock":1,"ops":{"sh0":["patch",{"txt":["append","é",1]}]},"by":"e"}"#,  // UTF-16 ≠ bytes
        #"{"t":"patch","clock":1,"ops":{"sh0":["patch",{"txt":["insert","ab",1]}]},"by":"e"}"#,  // another op
        #"{"t":"patch","clock":1,"ops":{"sh0":["put",{"n":1,"txt":"ab"}]},"by":"e"}"#,  // another record shape
        #"{"t":"patch","clock":1,"ops":{"sh0":["patch",{"txt":["append","ab",1]}]"#,  // cut short
        #"{"t":"patch","clock":1,"by":"e"}"#,  // no ops
    ])
    func whatItDoesNotReadIsLeftToTheParse(message: String) {
        #expect(!scan(message).read)
    }
}
