extension OpsHTTPServer {
    /// How the ops server listens and what it accepts.
    ///
    /// Threading is not configurable: the server runs one thread per
    /// connection (see `OpsHTTPServer.daemonFlags` for why).
    public struct Configuration: Sendable {
        /// IPv4 or IPv6 literal (brackets allowed, `[::1]`), or `localhost`
        /// (which means 127.0.0.1, never a name lookup). `::` listens
        /// dual-stack on every address.
        public var host: String
        /// TCP port; 0 lets the kernel pick a free one (see `boundPort`).
        public var port: Int
        /// Concurrent connections accepted (`MHD_OPTION_CONNECTION_LIMIT`);
        /// further ones are closed immediately. Each connection owns a thread.
        public var maxConnections: Int
        /// Idle seconds before a connection is closed; also bounds how long a
        /// slow client can hold a connection thread.
        public var connectionTimeoutSeconds: Int
        /// Largest accepted request body; larger uploads get 413.
        public var maxRequestBodyBytes: Int

        public init(
            host: String = "127.0.0.1",
            port: Int = 0,
            maxConnections: Int = 64,
            connectionTimeoutSeconds: Int = 10,
            maxRequestBodyBytes: Int = 64 * 1024
        ) {
            self.host = host
            self.port = port
            self.maxConnections = maxConnections
            self.connectionTimeoutSeconds = connectionTimeoutSeconds
            self.maxRequestBodyBytes = maxRequestBodyBytes
        }
    }
}
