import Foundation
import Testing
@testable import TandemOpsHTTP

/// StaticFiles on a scratch tree laid out like this:
///
///     parent/Package.swift, parent/secret.txt     (must never be served)
///     parent/root/index.html, app.js, …           (the served root)
///     parent/root/escape -> ../secret.txt         (symlink leaving the root)
///     parent/root/alias.css -> style.css          (symlink inside the root)
@Suite struct StaticFilesTests {
    private struct Tree {
        let directory: TemporaryDirectory
        var root: String { directory.path + "/root" }
        var files: StaticFiles { StaticFiles(root: root) }
    }

    private func makeTree() throws -> Tree {
        let directory = try TemporaryDirectory()
        try directory.write("Package.swift", "// outside the root\n")
        try directory.write("secret.txt", "top secret\n")
        try directory.write("root/index.html", "<!doctype html><title>Tandem</title>\n")
        try directory.write("root/app.js", "console.log('tandem')\n")
        try directory.write("root/mod.mjs", "export const x = 1\n")
        try directory.write("root/style.css", "body { margin: 0 }\n")
        try directory.write("root/data.json", "{}\n")
        try directory.write("root/logo.svg", "<svg/>\n")
        try directory.write("root/logo.png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00])
        try directory.write("root/favicon.ico", [0, 0, 1, 0])
        try directory.write("root/app.js.map", "{\"version\":3}\n")
        try directory.write("root/blob.bin", [1, 2, 3])
        try directory.write("root/docs/index.html", "<p>docs</p>\n")
        try directory.write("root/a b.txt", "spaced\n")
        try directory.write("root/.env", "TOKEN=1\n")
        try directory.symlink("root/escape", to: "../secret.txt")
        try directory.symlink("root/alias.css", to: "style.css")
        return Tree(directory: directory)
    }

    @Test(arguments: [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/mod.mjs", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/data.json", "application/json"),
        ("/logo.svg", "image/svg+xml"),
        ("/logo.png", "image/png"),
        ("/favicon.ico", "image/x-icon"),
        ("/app.js.map", "application/json"),
        ("/blob.bin", "application/octet-stream"),
    ])
    func servesFilesWithTheirContentType(path: String, contentType: String) throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        let onDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tree.root + path)))

        let response = try #require(tree.files.response(for: path))
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == contentType)
        #expect(response.header("Cache-Control") == "no-cache")
        #expect(response.body == onDisk)
    }

    @Test func contentTypeIgnoresCaseAndDirectories() {
        #expect(StaticFiles.contentType(forPath: "/x/INDEX.HTML") == "text/html; charset=utf-8")
        #expect(StaticFiles.contentType(forPath: "/v1.2/readme") == "application/octet-stream")
        #expect(StaticFiles.contentType(forPath: "/a/b.Js") == "text/javascript; charset=utf-8")
    }

    @Test func directoryPathsMapToIndexHtml() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }

        let root = try #require(tree.files.response(for: "/"))
        #expect(root.status == 200)
        #expect(String(decoding: root.body, as: UTF8.self).contains("<title>Tandem</title>"))
        #expect(root.header("Content-Type") == "text/html; charset=utf-8")

        let docs = try #require(tree.files.response(for: "/docs/"))
        #expect(String(decoding: docs.body, as: UTF8.self) == "<p>docs</p>\n")

        #expect(tree.files.response(for: "/docs") == nil, "a directory without a slash is not a file")
    }

    @Test func missingFilesAndMissingRootAreNil() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        #expect(tree.files.response(for: "/nope.html") == nil)
        #expect(tree.files.response(for: "/docs/nope/") == nil)
        #expect(StaticFiles(root: tree.root + "/does-not-exist").response(for: "/") == nil)
    }

    @Test(arguments: [
        "/../Package.swift",
        "/../secret.txt",
        "/%2e%2e/x",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/docs/../../secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/..\\secret.txt",
        "/.env",
        "/docs/./index.html",
        "/a\u{0}b",
        "relative.html",
        "",
        "/escape",
    ])
    func traversalAttemptsAre404(path: String) throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        let response = try #require(tree.files.response(for: path), "rejections are a 404, never nil")
        #expect(response.status == 404)
        #expect(!String(decoding: response.body, as: UTF8.self).contains("secret"))
    }

    /// A `/` after a prepended concatenation mark (U+0603) is one Character with it: a check that splits
    /// Characters sees no `..` segment here, the file system does (found by fuzz-query-string's twin).
    @Test(arguments: ["/\u{0603}/../index.html", "/a\u{0603}/../.env", "/\u{0603}/%2e%2e/index.html", "/\u{0603}\\x"])
    func separatorsHiddenInAGraphemeAreStillSeen(path: String) {
        #expect(StaticFiles.relativePath(for: path) == nil)
    }

    @Test func aCombiningMarkAfterTheLeadingSlashIsPartOfTheName() {
        #expect(StaticFiles.relativePath(for: "/\u{0301}x.html") == "\u{0301}x.html")
    }

    @Test func symlinkInsideTheRootIsServed() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        let response = try #require(tree.files.response(for: "/alias.css"))
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self) == "body { margin: 0 }\n")
    }

    @Test func rootGivenThroughASymlinkStillWorks() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        try tree.directory.symlink("root-link", to: "root")
        let files = StaticFiles(root: tree.directory.path + "/root-link")
        #expect(files.response(for: "/app.js")?.status == 200)
        #expect(files.response(for: "/escape")?.status == 404)
    }

    @Test func decodedNamesWithSpacesAreServed() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        // OpsRequest.path arrives percent-decoded.
        #expect(tree.files.response(for: "/a b.txt")?.body == Array("spaced\n".utf8))
    }

    @Test func editsShowUpWithoutRestart() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        let files = tree.files
        #expect(files.response(for: "/app.js")?.body == Array("console.log('tandem')\n".utf8))
        try tree.directory.write("root/app.js", "console.log('edited')\n")
        #expect(files.response(for: "/app.js")?.body == Array("console.log('edited')\n".utf8))
    }

    /// The same rules end to end, with raw request targets on the wire.
    @Test func overTheWireTraversalIs404AndPagesAreServed() throws {
        let tree = try makeTree()
        defer { tree.directory.remove() }
        let files = tree.files
        let server = try startedServer { request in
            guard request.method == "GET" || request.method == "HEAD" else {
                return .methodNotAllowed(allowed: ["GET", "HEAD"])
            }
            return files.response(for: request.path) ?? .notFound()
        }
        defer { server.stop() }
        let port = server.boundPort

        for target in ["/../Package.swift", "/%2e%2e/x", "/%2e%2e/Package.swift", "//etc/passwd",
                       "/docs/../../secret.txt", "/escape", "/.env"] {
            let response = try RawHTTP.get(target, port: port)
            #expect(response.status == 404, "\(target)")
            #expect(!response.text.contains("outside the root") && !response.text.contains("secret"))
        }

        let index = try RawHTTP.get("/", port: port)
        #expect(index.status == 200)
        #expect(index.header("Content-Type") == "text/html; charset=utf-8")
        #expect(index.header("Cache-Control") == "no-cache")
        #expect(index.text.contains("<title>Tandem</title>"))

        let connection = try RawHTTPConnection(port: port)
        try connection.send(RawHTTP.requestBytes("HEAD", "/app.js"))
        let head = try connection.readResponse(isHead: true)
        #expect(head.status == 200)
        #expect(head.header("Content-Type") == "text/javascript; charset=utf-8")
        #expect(head.header("Content-Length") == "22")
        #expect(try connection.readToEOF().isEmpty)

        let spaced = try RawHTTP.get("/a%20b.txt", port: port)
        #expect(spaced.text == "spaced\n")
    }
}
