import NIOCore

#if TLS
import NIOSSL
#endif

extension WebSocketClient {
    /// Connection settings. Every limit has a conservative default.
    public struct Configuration: Sendable {
        /// Largest message accepted from the server, in bytes, for a single frame and for a
        /// message joined from fragments. A larger one makes the client close the connection with
        /// 1009 (message too big). Default 16 MiB.
        public var maxFrameSize: Int
        /// Answer server pings with a pong carrying the same payload. Default `true`; tests set
        /// `false` to check that the server drops clients that stop answering.
        public var autoPong: Bool
        /// Bound on the TCP connect, and on the whole connect plus upgrade handshake. Default 10 s.
        public var connectTimeout: TimeAmount
        /// After this client sends a close frame, how long it waits for the server's close frame
        /// before dropping the TCP connection anyway. Default 5 s.
        public var closeTimeout: TimeAmount
        /// `SO_RCVBUF` of the socket, set before connecting, or `nil` (the default) for the kernel's.
        /// A fixed buffer is not auto-tuned: a client that pauses reading then backs the server up
        /// after about this many bytes, instead of after the megabytes Linux may grow it to.
        public var receiveBufferBytes: Int?
        #if TLS
        /// TLS settings of `wss://` connections (with the package's `TLS` trait). Default: the system's trusted
        /// CAs, TLS 1.2 or later, the certificate checked against the URL's host. For a private CA set
        /// `tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path))`.
        public var tls: TLSConfiguration = .makeClientConfiguration()
        #endif

        public init(
            maxFrameSize: Int = 16 << 20,
            autoPong: Bool = true,
            connectTimeout: TimeAmount = .seconds(10),
            closeTimeout: TimeAmount = .seconds(5),
            receiveBufferBytes: Int? = nil
        ) {
            precondition(maxFrameSize > 0 && maxFrameSize <= Int(UInt32.max), "maxFrameSize out of range")
            precondition(receiveBufferBytes.map { $0 > 0 && $0 <= Int(Int32.max) } ?? true, "receiveBufferBytes out of range")
            self.maxFrameSize = maxFrameSize
            self.autoPong = autoPong
            self.connectTimeout = connectTimeout
            self.closeTimeout = closeTimeout
            self.receiveBufferBytes = receiveBufferBytes
        }
    }

    /// Low-overhead receive path for load generation.
    ///
    /// Every callback runs **on the connection's event loop**, synchronously inside the read that
    /// decoded the message, so a receive timestamp taken in `onText` does not include a thread hop.
    /// Callbacks must not block. The `ByteBuffer` is a view of the received frame (no copy); keep
    /// it only as long as needed.
    ///
    /// A client connected with callbacks delivers nothing to ``WebSocketClient/events``.
    ///
    /// The connection holds its callbacks until it has ended (closed by either side, failed or aborted),
    /// then drops them: a callback may capture its own client, which is freed once the connection is over.
    /// Until then such a capture keeps the client, and so the connection, alive; capture it weakly if a
    /// client may be dropped without being closed.
    public struct Callbacks: Sendable {
        public var onText: (@Sendable (ByteBuffer) -> Void)?
        public var onBinary: (@Sendable (ByteBuffer) -> Void)?
        /// The connection is gone; same meaning as ``WebSocketEvent/closed(code:reason:)``.
        public var onClose: (@Sendable (_ code: Int?, _ reason: String) -> Void)?

        public init(
            onText: (@Sendable (ByteBuffer) -> Void)? = nil,
            onBinary: (@Sendable (ByteBuffer) -> Void)? = nil,
            onClose: (@Sendable (_ code: Int?, _ reason: String) -> Void)? = nil
        ) {
            self.onText = onText
            self.onBinary = onBinary
            self.onClose = onClose
        }
    }

    /// Receive counters of one connection.
    ///
    /// The event-loop side counts in plain integers and publishes them under a lock once per
    /// socket read (at `channelReadComplete`) and at close, so a reader can lag the newest message
    /// by the messages of one read.
    public struct Statistics: Sendable, Equatable {
        /// Text and binary messages received.
        public var messagesReceived = 0
        /// Payload bytes of those messages (frame headers not counted).
        public var bytesReceived = 0
        public var pingsReceived = 0
        public var pongsReceived = 0

        public init() {}
    }
}
