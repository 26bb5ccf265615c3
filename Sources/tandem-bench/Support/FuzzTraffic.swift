import Foundation
import TandemCore

#if canImport(Glibc)
import Glibc
#endif

// The traffic of `tandem-bench fuzz`: a WebSocket client on a plain blocking socket (so it can send
// frames no real client library would: bad opcodes, reserved bits, unmasked or fragmented control
// frames, lying length headers, invalid UTF-8) and generators of valid, mutated and malformed protocol
// messages. Everything random comes from one seeded generator per client, so a run's traffic is
// reproducible from its seed (timing aside).

/// SplitMix64: small, fast, seedable.
struct FuzzRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    mutating func chance(_ p: Double) -> Bool { Double(next() % 1_000_000) / 1_000_000 < p }
    mutating func pick<T>(_ options: [T]) -> T { options[int(0...(options.count - 1))] }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

// MARK: - Frames

enum WSOpcode {
    static let continuation: UInt8 = 0x0, text: UInt8 = 0x1, binary: UInt8 = 0x2
    static let close: UInt8 = 0x8, ping: UInt8 = 0x9, pong: UInt8 = 0xA
}

/// One client-to-server frame, with every field under the fuzzer's control.
func wsFrame(
    opcode: UInt8, payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0, masked: Bool = true,
    declaredLength: UInt64? = nil, longLengthForm: Bool = false
) -> [UInt8] {
    var out: [UInt8] = [(fin ? 0x80 : 0) | (rsv & 0x7) << 4 | (opcode & 0xF)]
    let length = declaredLength ?? UInt64(payload.count)
    let maskBit: UInt8 = masked ? 0x80 : 0
    if length < 126 && !longLengthForm {
        out.append(maskBit | UInt8(length))
    } else if length <= 0xFFFF && !longLengthForm {
        out.append(maskBit | 126)
        out += [UInt8(length >> 8), UInt8(length & 0xFF)]
    } else {
        out.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((length >> UInt64(shift)) & 0xFF)) }
    }
    if masked {
        let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        out += key
        out += payload.enumerated().map { $0.element ^ key[$0.offset & 3] }
    } else {
        out += payload
    }
    return out
}

func closePayload(code: UInt16, reason: [UInt8] = []) -> [UInt8] { [UInt8(code >> 8), UInt8(code & 0xFF)] + reason }

// MARK: - Raw client

/// A WebSocket connection over a blocking socket with send/receive timeouts. Reads only when asked
/// (`drain`), so a client can also stop reading and let the server's queue for it fill up.
final class RawWebSocket {
    let fd: Int32
    private(set) var session: String?
    private(set) var closed = false
    private var inbound: [UInt8] = []
    /// What the server sent, by kind: "error:bad_message", "close:1008", "presence", …
    private(set) var seen: [String: Int] = [:]

    /// Opens a TCP connection to 127.0.0.1:`port` (nil if refused).
    init?(port: Int, timeoutSeconds: Int = 3) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
    }

    deinit { if !closed { close(fd) } }

    /// Closes without a close frame (a lost connection, as far as the server can tell).
    func abort() {
        guard !closed else { return }
        closed = true
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    /// Writes everything; false when the server closed, reset, or did not read for the send timeout.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        guard !closed else { return false }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                note(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "send-timeout" : "send-failed")
                abort()
                return false
            }
            sent += n
        }
        return true
    }

    /// Sends an HTTP upgrade request (or whatever `request` is) and reads the response head.
    /// Returns the status code (101 on success; 0 when no HTTP answer came).
    func handshake(_ request: [UInt8]) -> Int {
        guard send(request) else { return 0 }
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while head.count < 64 * 1024 {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            head += chunk[0..<n]
            if let end = head.firstRange(of: [13, 10, 13, 10]) {
                inbound = Array(head[end.upperBound...])
                head = Array(head[..<end.lowerBound])
                break
            }
        }
        let line = String(decoding: head.prefix(while: { $0 != 13 }), as: UTF8.self)
        let status = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        note("http:\(status)")
        if status != 101 { abort() }
        return status
    }

    /// Reads what is available without blocking (up to `maxBytes`), parses whole server frames, and
    /// answers server pings (a fuzz client still keeps its connection alive unless told otherwise).
    func drain(maxBytes: Int = 4 << 20, answerPings: Bool = true) {
        guard !closed else { return }
        // Frames that arrived with the upgrade response are already buffered.
        parseFrames(answerPings: answerPings)
        guard !closed else { return }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var total = 0
        while total < maxBytes {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 {
                note("eof")
                abort()
                break
            }
            if n < 0 { break }
            total += n
            inbound += chunk[0..<n]
            parseFrames(answerPings: answerPings)
        }
    }

    /// Waits up to `seconds` for the server's first message (welcome) and records the session id.
    func awaitWelcome(seconds: Double = 3) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while session == nil && !closed && Date() < deadline {
            drain()
            if session == nil { usleep(5_000) }
        }
        return session != nil
    }

    private func parseFrames(answerPings: Bool) {
        var offset = 0
        while inbound.count - offset >= 2 {
            let b0 = inbound[offset], b1 = inbound[offset + 1]
            var length = UInt64(b1 & 0x7F)
            var header = 2
            if length == 126 {
                guard inbound.count - offset >= 4 else { break }
                length = UInt64(inbound[offset + 2]) << 8 | UInt64(inbound[offset + 3])
                header = 4
            } else if length == 127 {
                guard inbound.count - offset >= 10 else { break }
                length = inbound[(offset + 2)..<(offset + 10)].reduce(0) { $0 << 8 | UInt64($1) }
                header = 10
            }
            guard length < 64 << 20 else {
                note("server-frame-too-large")
                abort()
                return
            }
            guard UInt64(inbound.count - offset - header) >= length else { break }
            let payload = Array(inbound[(offset + header)..<(offset + header + Int(length))])
            offset += header + Int(length)
            switch b0 & 0x0F {
            case WSOpcode.text: noteText(payload)
            case WSOpcode.close:
                let code = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                note("close:\(code)")
                abort()
                return
            case WSOpcode.ping:
                note("ping")
                if answerPings { send(wsFrame(opcode: WSOpcode.pong, payload: payload)) }
            default:
                note("frame-opcode:\(b0 & 0x0F)")
            }
        }
        inbound.removeFirst(offset)
    }

    private func noteText(_ payload: [UInt8]) {
        guard let value = try? JSONParser.parse(payload), let o = value.objectValue, let t = o["t"]?.stringValue else {
            // Deeper than the 64 levels the server accepts from clients (ops pushed near the limit come
            // back wrapped in log/patch messages), or not JSON at all.
            note((try? JSONParser.parse(payload, maxDepth: 256)) != nil ? "server-json-deeper-than-64" : "invalid-server-json")
            return
        }
        if t == "error" {
            note("error:\(o["code"]?.stringValue ?? "?")")
        } else {
            note(t)
        }
        if t == "welcome" { session = o["session"]?.stringValue }
    }

    private func note(_ kind: String) { seen[kind, default: 0] += 1 }
}

// MARK: - Messages

/// Values that break naive code: numbers at the edges of every integer type and beyond, huge lexemes,
/// wrong types, long and odd strings, deep nesting.
enum Nasty {
    static let numbers = [
        "18446744073709551615", "18446744073709551614", "0", "1", "-1", "-0", "0.5", "1e3", "1E+400", "1e-400", "18446744073709551615", "18446744073709551616",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "4294967296",
        "2147483648", "9007199254740993", "5000", "5001", "1114112", "1000",
    ]

    static func number(_ r: inout FuzzRandom) -> String {
        switch r.int(0...9) {
        case 0: return String(repeating: "9", count: r.int(20...2000))
        case 1: return "1" + String(repeating: "0", count: r.int(19...400)) + (r.chance(0.5) ? "e-" + String(r.int(0...999)) : "")
        // The largest clock: `+ 1` on it traps wherever a range check is missing.
        case 2, 3: return "18446744073709551615"
        default: return r.pick(numbers)
        }
    }

    static func string(_ r: inout FuzzRandom) -> String {
        switch r.int(0...9) {
        case 0: return ""
        case 1: return String(repeating: "a", count: r.int(64...70_000))
        case 2: return String(repeating: "😀", count: r.int(1...3000))
        case 3: return "\u{0}\u{1}\u{7f}\u{2028}\"\\/"
        case 4: return "{d}:*?[]"
        case 5: return String(repeating: "é", count: 129)
        default: return r.pick(["fz-0", "fz-1", "a", "x:y", "..", "-", "board:42"])
        }
    }

    static func value(_ r: inout FuzzRandom, depth: Int = 0) -> String {
        switch r.int(0...11) {
        case 0: return "null"
        case 1: return r.chance(0.5) ? "true" : "false"
        case 2, 3: return number(&r)
        case 4, 5: return jsonString(string(&r))
        case 6: return nested(&r, depth: r.int(30...80))
        case 7: return depth > 3 ? "[]" : "[" + (0..<r.int(0...4)).map { _ in value(&r, depth: depth + 1) }.joined(separator: ",") + "]"
        default:
            guard depth <= 3 else { return "{}" }
            return "{" + (0..<r.int(0...4)).map { _ in "\(jsonString(string(&r))):\(value(&r, depth: depth + 1))" }
                .joined(separator: ",") + "}"
        }
    }

    static func nested(_ r: inout FuzzRandom, depth: Int) -> String {
        let open = r.chance(0.5) ? "[" : "{\"k\":"
        let close = open == "[" ? "]" : "}"
        return String(repeating: open, count: depth) + "1" + String(repeating: close, count: depth)
    }

    static func jsonString(_ s: String) -> String { String(decoding: JSONValue.string(s).serialized, as: UTF8.self) }
}

/// Protocol messages: valid ones for the client's docs, then mutated field by field and byte by byte.
struct MessageFactory {
    static let docs = (0..<8).map { "fz-\($0)" }

    /// A valid message of any type.
    static func valid(_ r: inout FuzzRandom, doc: String, clock: UInt64) -> [String: String] {
        var m: [String: String] = ["doc": Nasty.jsonString(doc)]
        switch r.int(0...9) {
        case 0:
            m["t"] = "\"join\""
            if r.chance(0.5) { m["state"] = "{\"c\":[\(r.int(0...999)),\(r.int(0...999))]}" }
            if r.chance(0.5) { m["since"] = String(r.int(0...Int(min(clock, 50)))) }
        case 1: m["t"] = "\"leave\""
        case 2, 3:
            m["t"] = "\"presence\""
            m["state"] = "{\"c\":[\(r.int(0...999)),\(r.int(0...999))],\"s\":\(Nasty.jsonString(String(repeating: "x", count: r.int(0...900))))}"
        case 4: m = ["t": "\"ping\""]
        case 5, 6, 7:
            m["t"] = "\"push\""
            m["id"] = r.chance(0.5) ? String(r.int(0...1_000_000)) : Nasty.jsonString("p\(r.int(0...99))")
            m["base"] = String(clock &- UInt64(r.int(0...3)) % (clock &+ 1))
            m["ops"] = ops(&r)
        case 8:
            m["t"] = "\"sync\""
            m["from"] = String(r.int(0...Int(min(clock, 100))))
            if r.chance(0.5) { m["limit"] = String(r.int(1...5000)) }
        default:
            m["t"] = "\"ack\""
            m["clock"] = String(clock)
        }
        return m
    }

    static func ops(_ r: inout FuzzRandom) -> String {
        let ids = ["r0", "r1", "r2", "r3", "😀"]
        let parts = (0..<r.int(1...4)).map { _ -> String in
            let id = Nasty.jsonString(r.pick(ids))
            switch r.int(0...3) {
            case 0: return "\(id):[\"put\",{\"text\":\(Nasty.jsonString(String(repeating: "t", count: r.int(0...50)))),\"n\":\(r.int(0...9))}]"
            case 1: return "\(id):[\"remove\"]"
            default:
                let field = Nasty.jsonString(r.pick(["text", "n", "list", "obj"]))
                let op: String
                switch r.int(0...4) {
                case 0: op = "[\"put\",\(r.int(0...9))]"
                case 1: op = "[\"delete\"]"
                case 2: op = "[\"patch\",{\"x\":[\"put\",1]}]"
                case 3: op = "[\"append\",[\(r.int(0...9))],\(r.int(0...5))]"
                default: op = "[\"append\",\(Nasty.jsonString(String(repeating: "y", count: r.int(0...9)))),\(r.int(0...60))]"
                }
                return "\(id):[\"patch\",{\(field):\(op)}]"
            }
        }
        return "{" + Set(parts).joined(separator: ",") + "}"
    }

    static func encode(_ fields: [String: String]) -> [UInt8] {
        Array(("{" + fields.map { "\(Nasty.jsonString($0.key)):\($0.value)" }.joined(separator: ",") + "}").utf8)
    }

    /// A message that is valid, or mutated: a field replaced by a nasty value, removed, an unknown field
    /// added, the type changed, or the serialized bytes damaged.
    static func message(_ r: inout FuzzRandom, doc: String, clock: UInt64) -> (kind: String, bytes: [UInt8]) {
        var fields = valid(&r, doc: doc, clock: clock)
        let t = fields["t"] ?? "?"
        switch r.int(0...9) {
        case 0, 1:
            return ("valid \(t)", encode(fields))
        case 2, 3, 4:
            // Mostly a field the message has (numbers get extreme numbers), sometimes one it may have.
            let own = fields.keys.filter { $0 != "t" }
            let key = r.chance(0.8) && !own.isEmpty ? r.pick(own) : r.pick(["id", "base", "from", "limit", "clock", "since", "state", "ops"])
            let numeric: Set = ["id", "base", "from", "limit", "clock", "since"]
            fields[key] = numeric.contains(key) && r.chance(0.7) ? Nasty.number(&r) : Nasty.value(&r)
            return ("\(t) with nasty \(key)", encode(fields))
        case 5:
            fields[r.pick(Array(fields.keys))] = nil
            return ("\(t) missing a field", encode(fields))
        case 6:
            fields[Nasty.string(&r)] = Nasty.value(&r)
            return ("\(t) with an unknown field", encode(fields))
        case 7:
            fields["t"] = r.chance(0.5) ? Nasty.value(&r) : Nasty.jsonString(Nasty.string(&r))
            return ("bad type", encode(fields))
        default:
            var bytes = encode(fields)
            for _ in 0..<r.int(1...4) where !bytes.isEmpty {
                let at = r.int(0...(bytes.count - 1))
                switch r.int(0...4) {
                case 0: bytes[at] ^= UInt8(1 << r.int(0...7))
                case 1: bytes.removeSubrange(at..<min(bytes.count, at + r.int(1...8)))
                case 2: bytes.insert(contentsOf: r.bytes(r.int(1...4)), at: at)
                case 3: bytes = Array(bytes.prefix(at))
                default: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 16)], at: at)
                }
            }
            return ("\(t) with damaged bytes", bytes)
        }
    }
}

/// Frame-level protocol violations (RFC 6455 §5), each a (description, bytes) pair.
enum FrameFactory {
    static func violation(_ r: inout FuzzRandom) -> (kind: String, bytes: [UInt8]) {
        let ping = Array("{\"t\":\"ping\"}".utf8)
        switch r.int(0...17) {
        case 0:
            return ("reserved bits", wsFrame(opcode: WSOpcode.text, payload: ping, rsv: UInt8(r.int(1...7))))
        case 1:
            let opcode = UInt8(r.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]))
            return ("opcode \(opcode)", wsFrame(opcode: opcode, payload: r.bytes(r.int(0...40))))
        case 2:
            return ("fragmented ping", wsFrame(opcode: WSOpcode.ping, payload: [1, 2], fin: false) + wsFrame(opcode: WSOpcode.continuation, payload: [3]))
        case 3:
            return ("ping over 125 bytes", wsFrame(opcode: WSOpcode.ping, payload: r.bytes(r.int(126...70_000))))
        case 4:
            return ("continuation without a start", wsFrame(opcode: WSOpcode.continuation, payload: ping))
        case 5:
            return (
                "text inside a fragmented text",
                wsFrame(opcode: WSOpcode.text, payload: Array(ping[0..<5]), fin: false) + wsFrame(opcode: WSOpcode.text, payload: ping)
            )
        case 6:
            return ("unmasked frame", wsFrame(opcode: WSOpcode.text, payload: ping, masked: false))
        case 7:
            let length = r.pick([UInt64(1) << 63, UInt64.max, 1 << 40, 4_456_449, 0x7FFF_FFFF])
            return ("length header \(length)", wsFrame(opcode: WSOpcode.text, payload: r.bytes(r.int(0...64)), declaredLength: length))
        case 8:
            return ("non-minimal length", wsFrame(opcode: WSOpcode.text, payload: ping, longLengthForm: true))
        case 9:
            let invalid: [[UInt8]] = [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xFF], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]]
            return ("invalid UTF-8 text", wsFrame(opcode: WSOpcode.text, payload: Array("{\"t\":\"".utf8) + r.pick(invalid) + Array("\"}".utf8)))
        case 10:
            return ("binary frame", wsFrame(opcode: WSOpcode.binary, payload: r.bytes(r.int(0...200))))
        case 11:
            let code = UInt16(r.pick([0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 4999, 5000, 65535]))
            return ("close code \(code)", wsFrame(opcode: WSOpcode.close, payload: closePayload(code: code)))
        case 12:
            return ("close with 1 byte", wsFrame(opcode: WSOpcode.close, payload: [3]))
        case 13:
            return ("close with invalid UTF-8 reason", wsFrame(opcode: WSOpcode.close, payload: closePayload(code: 1000, reason: [0xFF, 0xFE])))
        case 14:
            let message = Array("{\"t\":\"ping\",\"pad\":\"\(String(repeating: "p", count: r.int(0...2000)))\"}".utf8)
            var bytes: [UInt8] = []
            var rest = message[...]
            var first = true
            var fragments = 0
            while !rest.isEmpty {
                fragments += 1
                let piece = rest.prefix(r.int(1...64))
                rest = rest.dropFirst(piece.count)
                bytes += wsFrame(opcode: first ? WSOpcode.text : WSOpcode.continuation, payload: Array(piece), fin: rest.isEmpty)
                if r.chance(0.2) { bytes += wsFrame(opcode: WSOpcode.ping, payload: [9]) }
                first = false
            }
            return ("valid message in \(fragments) fragments", bytes)
        case 15:
            let size = r.pick([1_114_112, 1_114_113, 2_000_000, 4_456_448, 4_456_449])
            let payload = Array("{\"t\":\"ping\",\"pad\":\"".utf8) + [UInt8](repeating: 0x61, count: max(0, size - 21)) + Array("\"}".utf8)
            return ("message of \(payload.count) bytes", wsFrame(opcode: WSOpcode.text, payload: payload))
        case 16:
            return ("unsolicited pong", wsFrame(opcode: WSOpcode.pong, payload: r.bytes(r.int(0...125))))
        default:
            return ("random bytes", r.bytes(r.int(1...300)))
        }
    }
}

/// Upgrade requests, valid and not.
enum HandshakeFactory {
    static func key(_ r: inout FuzzRandom) -> String { Data(r.bytes(16)).base64EncodedString() }

    static func valid(port: Int, query: String, _ r: inout FuzzRandom) -> [UInt8] {
        Array((
            "GET /v1/ws?\(query) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key(&r))\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)
    }

    static func query(_ r: inout FuzzRandom, user: String, resume: String?) -> String {
        var items = ["user=\(user)", "name=\(user)"]
        switch r.int(0...9) {
        case 0: items.append("name=" + String(repeating: "%F0%9F%98%80", count: r.int(1...2000)))
        case 1: items.append("resume=" + (resume ?? "AAAAAAAAAAAAAAAAAAAAAA"))
        case 2: items.append(r.pick(["user=%ZZ", "user=%00", "user=", "resume=%FF%FE", "token=x.y.z", "user=" + String(repeating: "u", count: 5000)]))
        case 3: items.append(String(repeating: "&", count: r.int(1...500)) + "a=%")
        default: break
        }
        return items.joined(separator: "&")
    }

    static func malformed(port: Int, _ r: inout FuzzRandom) -> (kind: String, bytes: [UInt8]) {
        let valid = "Host: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        switch r.int(0...8) {
        case 0: return ("no Sec-WebSocket-Key", Array("GET /v1/ws HTTP/1.1\r\n\(valid)\r\n".utf8))
        case 1: return ("bad version", Array("GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key(&r))\r\nSec-WebSocket-Version: 99\r\n\r\n".utf8))
        case 2: return ("POST upgrade", Array("POST /v1/ws HTTP/1.1\r\n\(valid)Sec-WebSocket-Key: \(key(&r))\r\nContent-Length: 5\r\n\r\nhello".utf8))
        case 3: return ("huge header", Array("GET /v1/ws HTTP/1.1\r\nX-Big: \(String(repeating: "b", count: r.int(8_000...200_000)))\r\n\(valid)\r\n".utf8))
        case 4: return ("garbage request", r.bytes(r.int(1...2000)) + [13, 10, 13, 10])
        case 5: return ("plain GET", Array("GET \(r.pick(["/", "/v1/ws", "/metrics", "/v1/ws/../x", "*"])) HTTP/1.0\r\n\r\n".utf8))
        case 6: return ("HTTP/0.9", Array("GET /v1/ws\r\n\r\n".utf8))
        case 7: return ("huge URI", Array("GET /v1/ws?\(String(repeating: "a=b&", count: r.int(1000...20_000))) HTTP/1.1\r\n\(valid)Sec-WebSocket-Key: \(key(&r))\r\n\r\n".utf8))
        default: return ("pipelined requests", Array(String(repeating: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", count: r.int(2...50)).utf8))
        }
    }
}
