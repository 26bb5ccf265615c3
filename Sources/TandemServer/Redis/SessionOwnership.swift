import NIOCore
import TandemRedis

/// Which user each session id belongs to, cluster-wide, so `?resume=` on any node can refuse a session
/// that belongs to someone else (session ids are visible to the other members of a doc as `sid`).
///
/// `tandem:session:SID → user`, kept for a day after the session last connected, and re-claimed about once
/// an hour while a connection holds it (`refreshOpenSessions`): a connection that outlives the key would
/// otherwise leave its session id free for anyone who saw it (co-members see `sid`s) to claim.
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
    /// Open sessions are re-claimed once per this many housekeeping seconds, spread evenly over them.
    static let refreshSlots: UInt64 = 3_600
    private let redis: any RedisCommandClient

    init(redis: any RedisCommandClient) { self.redis = redis }

    static func key(_ sessionID: String) -> String { "tandem:session:\(sessionID)" }

    /// Claims `sessionID` for `user`. Succeeds with true when the session is free or already the user's,
    /// false when another user owns it; without Redis it succeeds with nil (unknown).
    func claim(_ sessionID: String, user: String, on loop: EventLoop) -> EventLoopFuture<Bool?> {
        guard redis.isConnected else { return loop.makeSucceededFuture(nil) }
        return redis.evalScript(Self.claim, keys: [Self.key(sessionID)], args: [user, Self.ttlSeconds], on: loop)
            .map { Optional($0.int == 1) }
            .recover { _ in nil }
    }

    /// Re-claims the sessions of the open connections whose slot is `second` (connection id modulo
    /// `refreshSlots`): every open session once per `refreshSlots` seconds, a few per second on a busy node.
    /// A key another user took meanwhile (only possible after it expired) is left to them.
    func refreshOpenSessions(_ open: [(id: UInt64, sessionID: String, user: String)], second: UInt64, on loop: EventLoop) {
        guard redis.isConnected else { return }
        for session in open where Self.isDue(connectionID: session.id, second: second) {
            _ = claim(session.sessionID, user: session.user, on: loop)
        }
    }

    static func isDue(connectionID: UInt64, second: UInt64) -> Bool {
        connectionID % refreshSlots == second % refreshSlots
    }
}
