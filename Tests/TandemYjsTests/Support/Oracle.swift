import Foundation
import TandemTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A reference implementation in another process (pycrdt in Python, Yjs in Node), spoken to in
/// JSON lines over its stdin/stdout: one request object, one response object. The oracles are in
/// Tests/yjs. The process is started once per test and killed when the oracle is released.
///
/// Missing prerequisites are errors, never skips: the interop tests are the proof that Tandem speaks
/// Yjs, so a machine without pycrdt or Yjs must fail them, saying what to install.
final class Oracle {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private let process = Process()
    private let input: FileHandle
    private let output: FileHandle
    private var buffer: [UInt8] = []
    let name: String

    private init(name: String, executable: String, arguments: [String], environment: [String: String]) throws {
        self.name = name
        let stdinPipe = Pipe()
        let stdoutPipe = Pipe()
        self.process.executableURL = URL(fileURLWithPath: executable)
        self.process.arguments = arguments
        var childEnvironment = ProcessInfo.processInfo.environment
        childEnvironment.merge(environment) { _, new in new }
        self.process.environment = childEnvironment
        self.process.standardInput = stdinPipe
        self.process.standardOutput = stdoutPipe
        self.process.standardError = FileHandle.standardError
        try self.process.run()
        self.input = stdinPipe.fileHandleForWriting
        self.output = stdoutPipe.fileHandleForReading
    }

    deinit {
        try? self.input.close()
        if self.process.isRunning {
            self.process.terminate()
        }
        self.process.waitUntilExit()
    }

    /// pycrdt (Tests/yjs/pycrdt_oracle.py) in the repository's virtualenv.
    static func pycrdt() throws -> Oracle {
        let python = PackagePaths.root.appendingPathComponent(".venv/bin/python").path
        let script = PackagePaths.root.appendingPathComponent("Tests/yjs/pycrdt_oracle.py").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw Failure(description: "no \(python): the Yjs interop tests need pycrdt in the virtualenv; run `make venv`")
        }
        let oracle = try Oracle(name: "pycrdt", executable: python, arguments: [script], environment: [:])
        _ = try oracle.request(["op": "content", "updates": [String]()])  // fails here if pycrdt is missing
        return oracle
    }

    /// Yjs 13.5 with lib0 and y-protocols, from Debian's node-yjs and node-y-protocols (which
    /// install under /usr/share/nodejs; NodeSource's node does not look there by itself).
    static func yjs() throws -> Oracle {
        let script = PackagePaths.root.appendingPathComponent("Tests/yjs/yjs_oracle.cjs").path
        let node = ["/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let node, FileManager.default.fileExists(atPath: "/usr/share/nodejs/yjs/package.json"),
            FileManager.default.fileExists(atPath: "/usr/share/nodejs/y-protocols/package.json")
        else {
            throw Failure(
                description: "the Yjs interop tests need node and Debian's node-yjs and node-y-protocols; run `make deps-test`")
        }
        let oracle = try Oracle(
            name: "yjs", executable: node, arguments: [script], environment: ["NODE_PATH": "/usr/share/nodejs"])
        _ = try oracle.request(["op": "merge", "updates": [String]()])
        return oracle
    }

    /// Sends one request and returns the response object; an `error` in it is thrown.
    func request(_ request: [String: Any]) throws -> [String: Any] {
        var line = try JSONSerialization.data(withJSONObject: request)
        line.append(0x0A)
        try self.input.write(contentsOf: line)
        let response = try JSON.parse(Data(try self.readLine()))
        if let error = response["error"] as? String {
            throw Failure(description: "\(self.name) oracle: \(error)")
        }
        return response
    }

    private func readLine() throws -> [UInt8] {
        while true {
            if let newline = self.buffer.firstIndex(of: 0x0A) {
                let line = Array(self.buffer[..<newline])
                self.buffer.removeSubrange(...newline)
                return line
            }
            let chunk = self.output.availableData
            guard !chunk.isEmpty else {
                throw Failure(description: "\(self.name) oracle exited (status \(self.process.isRunning ? -1 : self.process.terminationStatus))")
            }
            self.buffer.append(contentsOf: chunk)
        }
    }
}

extension Oracle {
    func bytes(_ response: [String: Any], _ key: String) throws -> [UInt8] {
        guard let text = response[key] as? String, let bytes = Hex.decode(text) else {
            throw Failure(description: "\(self.name) oracle: no hex \(key) in \(response)")
        }
        return bytes
    }

    func byteList(_ response: [String: Any], _ key: String) throws -> [[UInt8]] {
        guard let list = response[key] as? [String] else {
            throw Failure(description: "\(self.name) oracle: no list \(key) in \(response)")
        }
        return try list.map { text in
            guard let bytes = Hex.decode(text) else { throw Failure(description: "bad hex \(text)") }
            return bytes
        }
    }
}

enum Hex {
    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    static func list(_ updates: [[UInt8]]) -> [String] { updates.map(encode) }
}

/// A small seeded generator (SplitMix64), so a seed names one run of choices on the Swift side.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed &+ 0x9E37_79B9_7F4A_7C15
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
