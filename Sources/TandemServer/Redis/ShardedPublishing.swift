import Foundation
import TandemRedis

/// The scripts that publish on a doc's channel, in their cluster form.
///
/// A single Redis uses classic pub/sub (`PUBLISH`, `SUBSCRIBE`). In a Redis Cluster a classic `PUBLISH`
/// is broadcast to every node of the cluster, so fan-out cost grows with the cluster; Tandem uses sharded
/// pub/sub there instead (`SPUBLISH`, `SSUBSCRIBE`, Redis 7): a message goes only to the shard that owns
/// the doc's slot. The doc channel `tandem:{doc}` hashes to the slot of the doc's keys, so a script that
/// declares the doc's keys may `SPUBLISH` on it from the primary it runs on.
///
/// The cluster form of each script is its source with `redis.call('PUBLISH',` turned into
/// `redis.call('SPUBLISH',` (checked at start-up, so a script rewritten without that call fails loudly
/// instead of publishing the wrong way).
enum ShardedPublishing {
    /// `script` with every `PUBLISH` call made an `SPUBLISH`.
    static func sharded(_ script: RedisScript) -> RedisScript {
        let source = script.source.replacingOccurrences(of: "redis.call('PUBLISH',", with: "redis.call('SPUBLISH',")
        precondition(source != script.source, "a publishing script without redis.call('PUBLISH', …)")
        return RedisScript(source)
    }

    static let commit = sharded(GroupCommitScript.commit)
    static let presenceWrite = sharded(PresenceScripts.write)
    static let presenceDocWrite = sharded(PresenceScripts.docWrite)
    static let presenceSweep = sharded(PresenceScripts.sweep)
}

extension RedisCommandClient {
    /// `script` as this client publishes: the script itself with a single Redis, its `SPUBLISH` form in
    /// a cluster.
    func publishing(_ script: RedisScript, sharded: RedisScript) -> RedisScript {
        isClusterMode ? sharded : script
    }
}
