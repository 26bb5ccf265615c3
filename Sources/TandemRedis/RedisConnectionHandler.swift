/// The part of a connection that differs between ``RedisClient`` and ``RedisSubscriber``.
///
/// ``RedisConnection`` owns the socket and calls these methods on its owner thread only. A handler
/// reaches the callers' side through its own lock-protected shared state (queued work, the
/// `isConnected` flag); everything else in it is confined to the owner thread.
protocol RedisConnectionHandler: AnyObject {
    /// What the handler needs back when the reply to one of its commands arrives.
    associatedtype Request

    /// Moves work that callers queued since the last call into `send`, in order, and reports whether
    /// `shutdown()` was requested (then it leaves its queue for ``connectionClosed(failing:with:)``).
    /// Called once per loop iteration, also while disconnected.
    func takeWork(_ send: (RedisCommand, Request) -> Void) -> Bool

    /// The handshake succeeded: mark the connection usable, report the state change, and send what
    /// must go first on a fresh connection (the subscriber re-subscribes here).
    func connectionReady(_ send: (RedisCommand, Request) -> Void)

    /// Whether ``handlePush(_:oldest:)`` can ever consume a reply (`true` unless a handler says otherwise).
    static var receivesPushes: Bool { get }

    /// Consumes `reply` if it is an out-of-band push (a pub/sub message) rather than the answer to
    /// the oldest outstanding command. `oldest` is that command's request (`nil` when nothing of the
    /// handler's is outstanding, or a handshake or health check comes first), for replies that look
    /// the same either way (a server-initiated `sunsubscribe` and the confirmation of our own).
    func handlePush(_ reply: RedisValue, oldest: Request?) -> Bool

    /// The first element of the pub/sub message pushes ``handleMessage(_:)`` takes (`message`, `smessage`),
    /// or `nil` (the default) for a handler that gets none. Such a push, once read in full, is taken
    /// straight from the read buffer (``RedisPubSubPush``) instead of through ``handlePush(_:oldest:)``.
    var messagePushType: [UInt8]? { get }

    /// A pub/sub message push of type ``messagePushType``: what ``handlePush(_:oldest:)`` does with one.
    func handleMessage(_ message: RedisPubSubMessage)

    /// Every complete reply of one read from the socket was dispatched (the pushes among them through
    /// ``handlePush(_:oldest:)``): a handler that gathers pushes delivers them here, together.
    func readBurstEnded()

    /// The answer to `request`. Returns `false` if the reply makes no sense for it; the connection is
    /// then treated as broken. `send` queues further commands behind everything written so far (the
    /// client retries a script call answered `NOSCRIPT` with it).
    func complete(_ request: Request, with reply: RedisValue, send: (RedisCommand, Request) -> Void) -> Bool

    /// The connection is gone (or shutting down): mark it unusable, report the state change, and fail
    /// `outstanding` (sent, in order) and anything still queued with `error`.
    func connectionClosed(failing outstanding: [Request], with error: RedisError)
}

extension RedisConnectionHandler {
    static var receivesPushes: Bool { true }
    var messagePushType: [UInt8]? { nil }
    func handleMessage(_ message: RedisPubSubMessage) {}
    func readBurstEnded() {}
}
