import NIOCore
import TandemRedis

/// Which user each session id belongs to, cluster-wide, so `?resume=` on any node can refuse a session
/// that belongs to someone else (session ids are visible to the other members of a doc as `sid`).
///
/// `tandem:session:SID → user`, kept for a day after the session last connected.
final class SessionOwnership: Sendable {
    /// KEYS: session key. ARGV: user, ttl seconds. Claims the session for `user` unless another user owns
    /// it; returns 1 when claimed, 0 when refused.
    private static let claim = RedisScript(
        """
        local owner = redis.call('GET', KEYS[1])
        if owner and owner ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
        return 1
        """)

    static let ttlSeconds = 86_400
    private let redis: RedisClient

    init(redis: RedisClient) { self.redis = redis }

    static func key(_ sessionID: String) -> String { "tandem:session:\(sessionID)" }

    /// Claims `sessionID` for `user`. Succeeds with true when the session is free or already the user's,
    /// false when another user owns it; without Redis it succeeds with nil (unknown).
    func claim(_ sessionID: String, user: String, on loop: EventLoop) -> EventLoopFuture<Bool?> {
        guard redis.isConnected else { return loop.makeSucceededFuture(nil) }
        return redis.evalScript(Self.claim, keys: [Self.key(sessionID)], args: [user, Self.ttlSeconds], on: loop)
            .map { Optional($0.int == 1) }
            .recover { _ in nil }
    }
}
