#if TLS
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import TandemClient
import TandemCore
import TandemKit
import TandemTestSupport
import Testing

/// `wss://` (the package's `TLS` trait; `make test-tls`): TandemClient and TandemKit through a TLS-terminating
/// proxy (NIOSSL, certificates made by `openssl` for this run) in front of a real node on a real Redis, and
/// the hostile cases: a certificate from an untrusted CA, one for another host, a server that does not speak
/// TLS. Each is a typed `tlsFailed`, thrown at once, not a hang and not a retry loop.
@Suite(.cleanup, .serialized) struct TandemKitTLSTests {
    @Test func tandemKitOverWSSCommitsOnARealNode() async throws {
        let pki = try TestPKI.make()
        let cluster = try await SyncCluster.start(nodes: 1)
        let proxy = try await TLSProxy.start(to: cluster.nodes[0].port, certificate: pki.localhost, key: pki.localhostKey)
        var configuration = TandemConfiguration(
            urls: ["wss://localhost:\(proxy.port)/v1/ws"], identity: .development(user: "ada", name: "Ada"))
        configuration.tls.trustRoots = .certificates([pki.ca])
        let ada = try await TandemConnection.connect(configuration)
        Cleanup.current.add { await ada.close() }
        let doc = try await ada.join("tls:notes", presence: ["cursor": [1, 2]])
        #expect(try await doc.put("note:1", ["text": "over TLS"]) == .commit(clock: 1, recovered: false))

        // A plain ws:// client on the node itself sees the commit and the TLS client's presence.
        let bob = try await TandemConnection.connect(TandemConfiguration(
            urls: [cluster.nodes[0].wsBase], identity: .development(user: "bob")))
        Cleanup.current.add { await bob.close() }
        let seen = try await bob.join("tls:notes")
        #expect(await seen.record("note:1")?["text"]?.stringValue == "over TLS")
        #expect(await seen.members().byUser["ada"]?.first?.state["cursor"] == [1, 2])
        #expect(proxy.decryptedReads > 0, "the connection went through the TLS proxy")
    }

    /// The raw client, by IP literal (no SNI; the certificate's IP address is checked), gets the welcome.
    @Test func webSocketClientOverWSSByIPAddress() async throws {
        let pki = try TestPKI.make()
        let cluster = try await SyncCluster.start(nodes: 1)
        let proxy = try await TLSProxy.start(to: cluster.nodes[0].port, certificate: pki.localhost, key: pki.localhostKey)
        var configuration = WebSocketClient.Configuration()
        configuration.tls.trustRoots = .certificates([pki.ca])
        let client = try await WebSocketClient.connect(
            to: "wss://127.0.0.1:\(proxy.port)/v1/ws?user=ada", on: MultiThreadedEventLoopGroup.singleton,
            configuration: configuration)
        let first = Task { () -> String? in
            for await event in client.events { if case .text(let text) = event { return text } }
            return nil
        }
        try await waitUntil("the welcome arrived over TLS") { client.messagesReceived > 0 }
        #expect(await first.value?.contains("\"welcome\"") == true)
        await client.close()
    }

    enum Hostile: String, CaseIterable, Sendable {
        /// The proxy's certificate is fine, but this client does not trust its CA (the system's CAs only).
        case untrustedCA
        /// Signed by the trusted CA, but for `wrong.example`, not `localhost`.
        case wrongHost
        /// wss:// to the node's own plain port: no TLS on the other side.
        case plainServer
    }

    @Test(arguments: Hostile.allCases)
    func aTLSFailureIsTypedAndNotRetried(_ hostile: Hostile) async throws {
        let pki = try TestPKI.make()
        let cluster = try await SyncCluster.start(nodes: 1)
        let port: Int
        switch hostile {
        case .untrustedCA:
            port = try await TLSProxy.start(to: cluster.nodes[0].port, certificate: pki.localhost, key: pki.localhostKey).port
        case .wrongHost:
            port = try await TLSProxy.start(to: cluster.nodes[0].port, certificate: pki.wrongHost, key: pki.wrongHostKey).port
        case .plainServer:
            port = cluster.nodes[0].port
        }
        let url = "wss://localhost:\(port)/v1/ws"

        // TandemClient: the connect throws tlsFailed.
        var socketConfiguration = WebSocketClient.Configuration()
        if hostile != .untrustedCA { socketConfiguration.tls.trustRoots = .certificates([pki.ca]) }
        let rawConfiguration = socketConfiguration
        let raw = settled {
            try await WebSocketClient.connect(to: url, on: MultiThreadedEventLoopGroup.singleton, configuration: rawConfiguration)
        }
        try await waitUntil("the raw connect ended") { raw.value != nil }
        switch raw.value {
        case .failure(WebSocketClientError.tlsFailed(let host, let failedPort, let reason))?:
            #expect(host == "localhost" && failedPort == port && !reason.isEmpty)
        case let other:
            Issue.record("\(hostile): expected tlsFailed, got \(String(describing: other))")
        }

        // TandemKit: the connection stops for good with tlsFailed (no reconnect loop, no hang).
        var configuration = TandemConfiguration(urls: [url], identity: .development(user: "ada"))
        if hostile != .untrustedCA { configuration.tls.trustRoots = .certificates([pki.ca]) }
        let connection = try TandemConnection(configuration)
        Cleanup.current.add { await connection.close() }
        let attempt = settled { try await connection.start() }
        try await waitUntil("TandemKit stopped") { attempt.value != nil }
        switch attempt.value {
        case .failure(TandemError.tlsFailed(let failedURL, _))?:
            #expect(failedURL == url)
        case let other:
            Issue.record("\(hostile): expected tlsFailed, got \(String(describing: other))")
        }
        guard case .closed(.tlsFailed?) = await connection.state else {
            Issue.record("\(hostile): expected closed(tlsFailed), got \(await connection.state)")
            return
        }
    }
}

/// Runs `body` in a task; the box holds its outcome once it ended, for bounded polling (`waitUntil`) instead of
/// awaiting something that may never come.
func settled<Value: Sendable>(_ body: @escaping @Sendable () async throws -> Value) -> Locked<Result<Value, any Error>?> {
    let box = Locked<Result<Value, any Error>?>(nil)
    let task = Task {
        let result: Result<Value, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        box.withLock { $0 = result }
    }
    Cleanup.current.add { task.cancel() }
    return box
}

/// A CA and two server certificates it signed, made with `openssl` for one test: `localhost` (with the IP
/// address 127.0.0.1) and `wrong.example`.
struct TestPKI {
    var ca: NIOSSLCertificate
    var localhost: NIOSSLCertificate
    var localhostKey: NIOSSLPrivateKey
    var wrongHost: NIOSSLCertificate
    var wrongHostKey: NIOSSLPrivateKey

    static func make() throws -> TestPKI {
        let directory = try makeTemporaryDirectory(prefix: "tls-pki")
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        func openssl(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TLSSetupError(message: "openssl \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
            }
        }
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=Tandem test CA", "-keyout", path("ca.key"), "-out", path("ca.pem"),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        for (name, names) in [("localhost", "DNS:localhost,IP:127.0.0.1"), ("wrong", "DNS:wrong.example")] {
            try openssl([
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=\(name)", "-keyout", path("\(name).key"), "-out", path("\(name).csr"),
            ])
            try "subjectAltName=\(names)\nextendedKeyUsage=serverAuth\n".write(
                toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            try openssl([
                "x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", path("\(name).ext"), "-out", path("\(name).pem"),
            ])
        }
        Cleanup.current.add { try? FileManager.default.removeItem(at: directory) }
        return TestPKI(
            ca: try NIOSSLCertificate(file: path("ca.pem"), format: .pem),
            localhost: try NIOSSLCertificate(file: path("localhost.pem"), format: .pem),
            localhostKey: try NIOSSLPrivateKey(file: path("localhost.key"), format: .pem),
            wrongHost: try NIOSSLCertificate(file: path("wrong.pem"), format: .pem),
            wrongHostKey: try NIOSSLPrivateKey(file: path("wrong.key"), format: .pem))
    }
}

struct TLSSetupError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Terminates TLS (NIOSSL, the given certificate) and relays the plain bytes to a node's port.
final class TLSProxy: Sendable {
    let port: Int
    private let server: any Channel
    private let reads: NIOLockedValueBox<Int>

    /// Reads of decrypted bytes from clients (so: after a completed TLS handshake) so far.
    var decryptedReads: Int { reads.withLockedValue { $0 } }

    private init(server: any Channel, reads: NIOLockedValueBox<Int>) {
        self.server = server
        self.port = server.localAddress?.port ?? 0
        self.reads = reads
    }

    static func start(to targetPort: Int, certificate: NIOSSLCertificate, key: NIOSSLPrivateKey) async throws -> TLSProxy {
        let context = try NIOSSLContext(
            configuration: .makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key)))
        let reads = NIOLockedValueBox(0)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: targetPort)
                    .flatMapThrowing { outbound in
                        try inbound.pipeline.syncOperations.addHandlers(
                            NIOSSLServerHandler(context: context), Relay(peer: outbound, reads: reads))
                        try outbound.pipeline.syncOperations.addHandler(Relay(peer: inbound, reads: nil))
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let proxy = TLSProxy(server: server, reads: reads)
        Cleanup.current.add { try? await proxy.server.close() }
        return proxy
    }

    /// Copies bytes to the peer; either side ending ends both.
    private final class Relay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let reads: NIOLockedValueBox<Int>?
        init(peer: any Channel, reads: NIOLockedValueBox<Int>?) {
            self.peer = peer
            self.reads = reads
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            reads?.withLockedValue { $0 += 1 }
            peer.writeAndFlush(Self.unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
#endif
