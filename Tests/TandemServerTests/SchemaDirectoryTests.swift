import Foundation
import Testing

@testable import TandemServer

/// `--schema-dir`'s bounds (issue 13): a wrong path — a directory of data files — must fail the load with
/// a message naming what is wrong, never make the node read without limit; and the load is all or nothing.
@Suite struct SchemaDirectoryTests {
    static let valid = #"{"docs":"board:*","version":1,"records":[{"name":"note","idPrefix":"note:","schema":{"type":"object"}}]}"#

    /// A fresh directory under the system's temporary directory, removed after `body`.
    static func withDirectory(_ body: (String) throws -> Void) throws {
        let path = NSTemporaryDirectory() + "tandem-schemas-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    static func loadError(_ directory: String) -> String? {
        do {
            _ = try SchemaDirectory.load(directory)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aValidDirectoryLoadsInFileNameOrder() throws {
        try Self.withDirectory { dir in
            try Self.write(Self.valid, to: dir + "/b.json")
            try Self.write(Self.valid.replacingOccurrences(of: #""version":1"#, with: #""version":2"#), to: dir + "/a.json")
            try Self.write("not json, and not a schema file", to: dir + "/notes.txt")
            let registry = try SchemaDirectory.load(dir)
            #expect(registry.schemas.count == 2)
            #expect(registry.schema(for: "board:1")?.version == 2, "a.json comes first")
        }
    }

    @Test func aFileOverTheSizeBoundFailsTheLoadNamingIt() throws {
        try Self.withDirectory { dir in
            try Self.write(Self.valid, to: dir + "/a.json")
            // Valid JSON (a schema padded with spaces), one byte over the bound: refused by its size alone.
            let padded = Self.valid + String(repeating: " ", count: SchemaDirectory.maxFileBytes + 1 - Self.valid.utf8.count)
            try Self.write(padded, to: dir + "/big.json")
            let error = try #require(Self.loadError(dir))
            #expect(error.contains("big.json") && error.contains("at most \(SchemaDirectory.maxFileBytes)"), "\(error)")
            // At the bound exactly it loads.
            try Self.write(String(padded.dropLast()), to: dir + "/big.json")
            #expect(try SchemaDirectory.load(dir).schemas.count == 2)
        }
    }

    @Test func moreFilesThanTheBoundFailTheLoad() throws {
        try Self.withDirectory { dir in
            for i in 0...SchemaDirectory.maxFiles {
                try Self.write(Self.valid, to: dir + "/s\(i).json")
            }
            let error = try #require(Self.loadError(dir))
            #expect(error.contains("\(SchemaDirectory.maxFiles + 1) schema files") && error.contains("at most \(SchemaDirectory.maxFiles)"), "\(error)")
        }
    }

    @Test func nestingBeyondTheDepthBoundFailsTheLoad() throws {
        try Self.withDirectory { dir in
            let depth = SchemaDirectory.maxDepth + 1
            let deep = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
            try Self.write(deep, to: dir + "/deep.json")
            let error = try #require(Self.loadError(dir))
            #expect(error.contains("deep.json") && error.contains("not valid JSON"), "\(error)")
        }
    }

    @Test func oneInvalidFileFailsTheWholeLoadNamingTheFileAndPath() throws {
        try Self.withDirectory { dir in
            try Self.write(Self.valid, to: dir + "/a.json")
            try Self.write(Self.valid.replacingOccurrences(of: #"{"type":"object"}"#, with: #"{"type":"objekt"}"#), to: dir + "/b.json")
            let error = try #require(Self.loadError(dir))
            #expect(error.contains("b.json"), "\(error)")
        }
    }

    @Test func aDirectoryNamedLikeASchemaIsSkipped() throws {
        try Self.withDirectory { dir in
            try Self.write(Self.valid, to: dir + "/a.json")
            try FileManager.default.createDirectory(atPath: dir + "/sub.json", withIntermediateDirectories: false)
            #expect(try SchemaDirectory.load(dir).schemas.count == 1)
        }
    }
}
