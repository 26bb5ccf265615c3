import Foundation
import TandemRedis
@testable import TandemServer
import Testing

/// The cluster forms of the publishing scripts: every `PUBLISH` made an `SPUBLISH`, nothing else changed
/// (so a script rewritten without its publish call fails here, not at a cluster node's first commit).
@Suite struct ShardedPublishingTests {
    @Test(arguments: [
        (GroupCommitScript.commit, ShardedPublishing.commit),
        (PresenceScripts.write, ShardedPublishing.presenceWrite),
        (PresenceScripts.sweep, ShardedPublishing.presenceSweep),
    ])
    func everyPublishIsSharded(classic: RedisScript, sharded: RedisScript) {
        #expect(classic.source.contains("redis.call('PUBLISH',"))
        #expect(!sharded.source.contains("redis.call('PUBLISH',"))
        #expect(sharded.source.replacingOccurrences(of: "'SPUBLISH'", with: "'PUBLISH'") == classic.source)
        #expect(sharded.sha1 != classic.sha1)
    }
}
