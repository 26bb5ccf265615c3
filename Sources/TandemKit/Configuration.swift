#if TLS
import NIOSSL
#endif

/// Who the client is to the server.
public enum Identity: Sendable, Hashable {
    /// A JWT (servers started with `--jwt-secret-file`), sent as `?token=`.
    case token(String)
    /// Development mode (a server without a secret): `?user=&name=`; a random `anon-…` user when nil.
    case development(user: String?, name: String? = nil)
}

/// How a ``TandemConnection`` connects and behaves. Every limit has a conservative default.
public struct TandemConfiguration: Sendable {
    /// `ws://host:port/v1/ws` addresses of the nodes, tried in turn: the next one after a refused or failed
    /// connection and after a node's drain (close 1001). `wss://host/v1/ws` with the package's `TLS` trait
    /// (`.package(url: …, traits: ["TLS"])`), checked as ``tls`` says.
    public var urls: [String]
    public var identity: Identity
    /// Reconnect delays (full jitter). Default 250 ms doubling up to 15 s.
    public var backoff: Backoff
    /// A connection that stays up this long resets the backoff (a node that accepts and drops at once must
    /// not get a tight reconnect loop). Default 5 s.
    public var stableAfter: Duration
    /// When the server has been silent this long, the client sends `{"t":"ping"}`; silent for 2.5× this,
    /// the connection counts as lost (the server pings every 10 s by default). Default 15 s.
    public var heartbeat: Duration
    /// Bound on the TCP connect plus the upgrade handshake. Default 10 s.
    public var connectTimeout: Duration
    /// Applied commits are acknowledged (`ack`, which feeds the server's lag metric) at most this often per
    /// doc. Default 250 ms.
    public var ackDelay: Duration
    /// Edits made while a push is in flight are folded into the next push up to this many records and about
    /// this many bytes of ops (below the server's `--max-push-ops` 1,000 and `--max-push-bytes` 1 MiB, so
    /// the folded push is not refused whole). Defaults 500 and 256 KiB.
    public var maxRecordsPerPush: Int
    public var maxBytesPerPush: Int
    /// Largest message accepted from the server (a larger one closes the connection with 1009; the server's
    /// chunks are about 1 MiB). Default 16 MiB.
    public var maxInboundMessageBytes: Int
    /// Where joined docs' records, clock and pending edits are kept so that they survive a process restart
    /// (``TandemStore``). Default nil: in memory only (pending edits survive reconnects, not a restart).
    public var store: TandemStore?
    #if TLS
    /// TLS settings of `wss://` URLs. Default: the system's trusted CAs, TLS 1.2 or later, the certificate
    /// checked against the URL's host. A private CA: `tls.trustRoots = .certificates(try
    /// NIOSSLCertificate.fromPEMFile(path))`. A failed TLS handshake stops the connection with
    /// ``TandemError/tlsFailed(url:reason:)`` (retrying does not fix a certificate).
    public var tls: TLSConfiguration = .makeClientConfiguration()
    #endif

    public init(
        urls: [String],
        identity: Identity,
        backoff: Backoff = Backoff(),
        stableAfter: Duration = .seconds(5),
        heartbeat: Duration = .seconds(15),
        connectTimeout: Duration = .seconds(10),
        ackDelay: Duration = .milliseconds(250),
        maxRecordsPerPush: Int = 500,
        maxBytesPerPush: Int = 256 * 1024,
        maxInboundMessageBytes: Int = 16 << 20,
        store: TandemStore? = nil
    ) {
        self.urls = urls
        self.identity = identity
        self.backoff = backoff
        self.stableAfter = stableAfter
        self.heartbeat = heartbeat
        self.connectTimeout = connectTimeout
        self.ackDelay = ackDelay
        self.maxRecordsPerPush = maxRecordsPerPush
        self.maxBytesPerPush = maxBytesPerPush
        self.maxInboundMessageBytes = maxInboundMessageBytes
        self.store = store
    }

    /// The URL of attempt `index` (cycling through ``urls``) with the identity and `resume` in its query.
    func url(index: Int, resume session: String?) -> String {
        var url = urls[index % urls.count]
        var query: [(String, String)] = []
        switch identity {
        case .token(let token):
            query.append(("token", token))
        case .development(let user, let name):
            if let user { query.append(("user", user)) }
            if let name { query.append(("name", name)) }
        }
        if let session { query.append(("resume", session)) }
        for (key, value) in query {
            url += (url.contains("?") ? "&" : "?") + key + "=" + Self.percentEncoded(value)
        }
        return url
    }

    /// RFC 3986 unreserved characters pass; every other byte is percent-encoded.
    static func percentEncoded(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return out
    }
}

/// Where a ``TandemConnection`` is.
public enum ConnectionState: Sendable, Equatable {
    /// The first connection is being made.
    case connecting
    /// Connected and welcomed.
    case open(Welcome)
    /// The connection is gone; the next attempt starts after `delay`. `reason` says why (close code, error).
    case reconnecting(attempt: Int, delay: Duration, reason: String)
    /// For good: closed by ``TandemConnection/close()`` (nil) or for a reason retrying cannot fix.
    case closed(TandemError?)
}

/// What changed in a doc, in order.
public enum DocumentEvent: Sendable, Equatable {
    /// In sync with the server at `clock` (after the first catch-up and after every reconnect).
    case synced(clock: UInt64)
    /// Records changed (see ``TandemDocument/records()``).
    case records(RecordChange)
    /// Members joined, changed their state, or left.
    case presence(joined: [Member], updated: [Member], left: [String])
    /// The server answered a push (``PushOutcome``), or refused it.
    case pushSettled(Result<PushOutcome, TandemError>)
    /// An `error` from the server about this doc (`rate_limited` hints included).
    case serverError(ServerError)
    /// The doc's state could not be written to the ``TandemConfiguration/store`` (over its size limit, a full
    /// disk): its edits are kept in memory only until a later write succeeds.
    case storeFailed(TandemStoreError)
}

/// Which records changed and why.
public struct RecordChange: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// A local edit (applied optimistically).
        case local
        /// Someone's commit (a live patch or the catch-up log).
        case remote
        /// A snapshot replaced every record.
        case snapshot
        /// The server answered one of this client's pushes (its optimistic change was confirmed or replaced).
        case result
    }

    public var source: Source
    /// The doc's confirmed clock after the change.
    public var clock: UInt64
    /// The records that may have changed; nil after a snapshot (any of them).
    public var ids: Set<String>?
}
