import Foundation
import NIOCore
import TandemClient
import TandemTestSupport
import TandemYjs

/// A y-protocols test client for `/yjs/{room}`: collects every message it receives, decoded.
final class YjsTestClient: @unchecked Sendable {
    // @unchecked: `store` is guarded by `lock`; `socket` is set once in `connect`.
    private(set) var socket: WebSocketClient!
    private let lock = NSLock()
    private var store: [YProtocolMessage] = []
    private var undecodable = 0
    let name: String

    private init(name: String) { self.name = name }

    static func url(port: Int, room: String, user: String, token: String? = nil) -> String {
        if let token { return "ws://127.0.0.1:\(port)/yjs/\(room)?token=\(token)" }
        return "ws://127.0.0.1:\(port)/yjs/\(room)?user=\(user)&name=\(user)"
    }

    static func connect(_ url: String, name: String = "yjs") async throws -> YjsTestClient {
        let client = YjsTestClient(name: name)
        client.socket = try await WebSocketClient.connect(
            to: url, on: TestClient.group,
            // Weak: the socket keeps its handler and the handler these callbacks, so a strong `client` here
            // was a cycle that kept every client, its socket and all it received alive (LeakSanitizer).
            callbacks: .init(onBinary: { [weak client] buffer in client?.received(Array(buffer.readableBytesView)) }))
        return client
    }

    private func received(_ bytes: [UInt8]) {
        let message = try? YProtocolMessage(decoding: bytes)
        lock.withLock {
            if let message { store.append(message) } else { undecodable += 1 }
        }
    }

    var messages: [YProtocolMessage] { lock.withLock { store } }
    var undecodableCount: Int { lock.withLock { undecodable } }

    /// Every sync update received (type 0/2), in order.
    var updates: [[UInt8]] {
        messages.compactMap { if case .update(let bytes) = $0 { return bytes } else { return nil } }
    }

    func send(_ message: YProtocolMessage) { socket.sendBinary(message.encoded()) }
    func sendRaw(_ bytes: [UInt8]) { socket.sendBinary(bytes) }

    /// Waits for the server's step 1 (sent on connect).
    func serverStep1() async throws -> YStateVector {
        try await waitUntil("\(name) got the server's step 1") {
            self.messages.contains { if case .syncStep1 = $0 { true } else { false } }
        }
        for case .syncStep1(let bytes) in messages { return try YStateVector(decoding: bytes) }
        fatalError("unreachable")
    }

    /// Sends a step 1 and waits for the step 2 that answers it (the `n`th step 2 received).
    func step2(for vector: YStateVector) async throws -> YUpdate {
        let before = step2s.count
        send(.syncStep1(stateVector: vector.encoded()))
        try await waitUntil("\(name) got a step 2") { self.step2s.count > before }
        return try YUpdate(decoding: step2s[before])
    }

    var step2s: [[UInt8]] {
        messages.compactMap { if case .syncStep2(let bytes) = $0 { return bytes } else { return nil } }
    }

    var closeCode: Int? { socket.closeCode }

    func waitClosed(timeout: Duration = .seconds(10)) async throws -> Int? {
        try await waitUntil("\(name) closed", timeout: timeout) { self.socket.isClosed }
        return socket.closeCode
    }

    func close() async { await socket.close() }
}

enum YjsUpdates {
    /// Client `client` appends `text` to the root Y.Text "t": its first item is under the root, later ones
    /// follow its own previous character (`clock` is the UTF-16 length it wrote before).
    static func text(client: UInt64, clock: Int, _ text: String) -> [UInt8] {
        var encoder = Lib0Encoder()
        encoder.writeVarUInt(1)  // one client section
        encoder.writeVarUInt(1)  // one struct
        encoder.writeVarUInt(client)
        encoder.writeVarUInt(clock)
        if clock == 0 {
            encoder.writeUInt8(4)  // ContentString, parent follows
            encoder.writeVarUInt(1)
            encoder.writeVarString("t")
        } else {
            encoder.writeUInt8(4 | 0x80)  // ContentString with an origin
            encoder.writeVarUInt(client)
            encoder.writeVarUInt(clock - 1)
        }
        encoder.writeVarString(text)
        encoder.writeVarUInt(0)  // empty delete set
        return encoder.bytes
    }

    static func vector(_ clocks: [UInt64: Int]) -> YStateVector {
        YStateVector(entries: clocks.map { YStateVector.Entry(client: $0.key, clock: $0.value) })
    }
}
