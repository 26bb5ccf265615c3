extension OpsHTTPServer {
    /// How the ops server listens and what it accepts. Every value is a bound on what one client can
    /// cost; the defaults suit an ops port that sees scrapers, probes and a few status pages.
    public struct Configuration: Sendable {
        /// IPv4 or IPv6 literal (brackets allowed, `[::1]`), or `localhost`
        /// (which means 127.0.0.1, never a name lookup). `::` listens
        /// dual-stack on every address.
        public var host: String
        /// TCP port; 0 lets the kernel pick a free one (see `boundPort`).
        public var port: Int
        /// libmicrohttpd polling threads. Every connection lives on one of them, and an
        /// idle connection costs no thread; handlers run on them, so a handler must never block for long
        /// (answer slow work with `OpsReply.deferred`).
        public var threads: Int
        /// Connections open at once. At the limit, a new connection closes the one idle longest (see
        /// `ConnectionAdmission`), so idle or slow clients cannot keep a health check out; only when every
        /// connection is inside a request is the new one closed at once.
        public var maxConnections: Int
        /// Connections open at once from one client address (an IPv6 client: its /64); more are closed
        /// at once.
        public var maxConnectionsPerAddress: Int
        /// Seconds without any traffic before libmicrohttpd closes a connection; also how long a request
        /// may run before its connection becomes evictable at the connection limit.
        public var connectionTimeoutSeconds: Int
        /// Largest accepted request body; larger uploads get 413. 0: no request may carry a body.
        public var maxRequestBodyBytes: Int
        /// Bytes libmicrohttpd may use per connection for the request line, headers and response headers
        /// (`MHD_OPTION_CONNECTION_MEMORY_LIMIT`); a longer request head gets 414/431 from libmicrohttpd.
        public var connectionMemoryBytes: Int
        /// Deferred answers (`OpsReply.deferred`) pending at once; more get 503 `busy` right away.
        public var maxPendingResponses: Int
        /// Milliseconds a deferred answer may take; then the server answers 503 `timeout` itself.
        public var responseTimeoutMs: Int
        /// Which `Host` headers are answered (DNS-rebinding defence); others get 421.
        public var hostPolicy: OpsHostPolicy

        public init(
            host: String = "127.0.0.1",
            port: Int = 0,
            threads: Int = 2,
            maxConnections: Int = 1024,
            maxConnectionsPerAddress: Int = 32,
            connectionTimeoutSeconds: Int = 5,
            maxRequestBodyBytes: Int = 64 * 1024,
            connectionMemoryBytes: Int = 32 * 1024,
            maxPendingResponses: Int = 16,
            responseTimeoutMs: Int = 2_000,
            hostPolicy: OpsHostPolicy = .literalsAndLocalhost
        ) {
            self.host = host
            self.port = port
            self.threads = threads
            self.maxConnections = maxConnections
            self.maxConnectionsPerAddress = maxConnectionsPerAddress
            self.connectionTimeoutSeconds = connectionTimeoutSeconds
            self.maxRequestBodyBytes = maxRequestBodyBytes
            self.connectionMemoryBytes = connectionMemoryBytes
            self.maxPendingResponses = maxPendingResponses
            self.responseTimeoutMs = responseTimeoutMs
            self.hostPolicy = hostPolicy
        }

        /// Range checks, so a bad value fails `start()` with a clear message.
        func validate() throws(OpsHTTPServerError) {
            func check(_ ok: Bool, _ message: String) throws(OpsHTTPServerError) {
                if !ok { throw OpsHTTPServerError.invalidConfiguration(message) }
            }
            try check((0...65535).contains(port), "port \(port) not in 0...65535")
            try check((1...64).contains(threads), "threads must be 1–64")
            try check((1...1_000_000).contains(maxConnections), "maxConnections must be 1–1000000")
            try check((1...1_000_000).contains(maxConnectionsPerAddress), "maxConnectionsPerAddress must be 1–1000000")
            try check((1...86_400).contains(connectionTimeoutSeconds), "connectionTimeoutSeconds must be 1–86400")
            try check((0...(1 << 30)).contains(maxRequestBodyBytes), "maxRequestBodyBytes must be 0–1 GiB")
            try check((4096...(1 << 24)).contains(connectionMemoryBytes), "connectionMemoryBytes must be 4 KiB–16 MiB")
            try check((1...1_000_000).contains(maxPendingResponses), "maxPendingResponses must be 1–1000000")
            try check((1...3_600_000).contains(responseTimeoutMs), "responseTimeoutMs must be 1–3600000")
        }

        /// libmicrohttpd's own connection limit: room for connections being refused or evicted (they
        /// hold a socket until their thread closes it) on top of `maxConnections`.
        var libraryConnectionLimit: Int {
            maxConnections + max(64, maxConnections / 4) + threads
        }
    }
}

/// What the ops server reports as it runs (for metrics). Called on libmicrohttpd's threads (and the
/// response-timeout timer's), possibly concurrently; the counts (`openConnections`, `pendingResponses`)
/// under the server lock that orders them, so the observer must be quick (set a gauge, bump a counter)
/// and must never call back into the server.
public enum OpsHTTPEvent: Sendable, Equatable {
    /// Connections now open (admitted and not being closed).
    case openConnections(Int)
    /// A new connection was closed at once.
    case connectionRefused(OpsConnectionRefusal)
    /// An idle connection was closed to make room for a new one at `maxConnections`.
    case connectionEvicted
    /// A request was answered 421: its `Host` is not allowed.
    case hostRejected
    /// Deferred answers now pending.
    case pendingResponses(Int)
    /// A deferred answer was refused with 503 `busy`: `maxPendingResponses` were pending.
    case pendingLimitReached
    /// A deferred answer did not come within `responseTimeoutMs`; the server answered 503 `timeout`.
    case responseTimedOut
    /// A response was queued. `label` is the handler's for its route class (nil: the server answered
    /// without the handler — 413, 421); `seconds` runs from the complete request to the queued response.
    case requestFinished(label: String?, status: Int, seconds: Double)
}

/// Why a connection was closed as soon as it was accepted.
public enum OpsConnectionRefusal: String, Sendable, CaseIterable {
    /// `maxConnectionsPerAddress` connections from that address were open.
    case perAddress = "per_address"
    /// `maxConnections` were open and every one was inside a request.
    case full
}
