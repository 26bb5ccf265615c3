import Testing

@testable import TandemServer

/// `RedisKeys.doc(fromChannel:)` routes every pub/sub message a node receives to its doc.
@Suite struct RedisKeysTests {
    @Test func aDocChannelGivesItsDocBack() {
        for doc in ["a", "doc-1", "team/notes:2026", "", "{nested}", "naïve-日本", "x}y"] {
            #expect(RedisKeys.doc(fromChannel: RedisKeys.channel(doc)) == doc)
        }
    }

    @Test func otherChannelsAreNotDocs() {
        for channel in ["", "tandem:", "tandem:{", "tandem:}", "tandem:yjs:room", "tandem:{a}:nodes", "other:{a}", "tandem:{a", "tandem{a}"] {
            #expect(RedisKeys.doc(fromChannel: channel) == nil, "\(channel)")
        }
    }
}
