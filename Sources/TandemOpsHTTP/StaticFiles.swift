#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemSystem

/// Serves the files of one directory (the browser status page in
/// `Web/status/`), read from disk on every request so edits show up live.
///
/// Answers are sent with `Cache-Control: no-cache`: browsers may keep a copy
/// but must revalidate, which matters while the page is being worked on.
///
/// Paths that try to leave the directory — `..` segments (also as
/// `%2e%2e`), a second leading slash (`//etc/passwd`), backslashes, NUL,
/// dotfiles, or a symlink resolving outside the root — get a 404 response,
/// never `nil`, so that a router cannot fall through to another route with
/// them.
public struct StaticFiles: Sendable {
    /// The directory served. Resolved (symlinks included) on each request.
    public let root: String
    /// Files larger than this are answered with 500 rather than read into memory.
    public static let maxFileBytes = 16 * 1024 * 1024

    public init(root: String) {
        self.root = root
    }

    /// The response for a request path such as `OpsRequest.path` (already
    /// percent-decoded; an undecoded path is checked too).
    ///
    /// - Returns: 200 with the file and its content type; 404 for a rejected
    ///   path; 500 if the file exists but cannot be read; `nil` if the path
    ///   is acceptable but names no regular file (missing, a directory, or
    ///   the root itself is missing), so the caller decides what follows.
    ///   `/` and any path ending in `/` map to that directory's `index.html`.
    public func response(for path: String) -> OpsResponse? {
        guard let relative = Self.relativePath(for: path) else { return .notFound() }
        guard let resolvedRoot = Self.resolve(root) else { return nil }
        guard let resolved = Self.resolve(resolvedRoot + "/" + relative) else { return nil }
        let rootPrefix = resolvedRoot.hasSuffix("/") ? resolvedRoot : resolvedRoot + "/"
        // Bytes, not Characters: String's hasPrefix compares canonically equivalent forms, the file
        // system does not.
        guard resolved.utf8.starts(with: rootPrefix.utf8) else { return .notFound() }

        switch Self.readRegularFile(atPath: resolved) {
        case .notRegularFile:
            return nil
        case .unreadable(let reason):
            return .text("cannot read \(relative): \(reason)\n", status: 500)
        case .contents(let bytes):
            return OpsResponse(
                status: 200,
                headers: [("Content-Type", Self.contentType(forPath: relative)), ("Cache-Control", "no-cache")],
                body: bytes)
        }
    }

    /// Content type by file extension (case-insensitive);
    /// `application/octet-stream` for anything unknown.
    public static func contentType(forPath path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: ".") else { return "application/octet-stream" }
        switch name[name.index(after: dot)...].lowercased() {
        case "html", "htm": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json", "map": return "application/json"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "ico": return "image/x-icon"
        case "txt": return "text/plain; charset=utf-8"
        default: return "application/octet-stream"
        }
    }

    /// The path relative to the root, or nil if it must be rejected. Checks
    /// the path as given and once more percent-decoded, so a path that was
    /// not decoded upstream cannot smuggle `%2e%2e` or `%2f` past the check
    /// (the cost: files whose names contain such escapes cannot be served).
    ///
    /// Works on UTF-8 bytes: split as Characters, a `/` after a prepended concatenation mark (U+0600…
    /// U+0605) is part of the mark's grapheme, so `"\u{0603}/../"` would hide its `..` segment.
    static func relativePath(for path: String) -> String? {
        let slash = UInt8(ascii: "/")
        guard path.utf8.first == slash else { return nil }
        var relative = String(decoding: path.utf8.dropFirst(), as: UTF8.self)
        if relative.isEmpty || relative.utf8.last == slash { relative += "index.html" }
        for form in [relative, percentDecoded(relative)] {
            let bytes = Array(form.utf8)
            // A leading "/" here means the request was "//…": an absolute path.
            if bytes.first == slash || bytes.contains(0) || bytes.contains(UInt8(ascii: "\\")) { return nil }
            for segment in bytes.split(separator: slash, omittingEmptySubsequences: false) {
                // Empty ("a//b"), ".", ".." and dotfiles (.git, .env) alike.
                if segment.first == nil || segment.first == UInt8(ascii: ".") { return nil }
            }
        }
        return relative
    }

    /// Decodes `%XX` escapes; malformed escapes are kept literally.
    static func percentDecoded(_ text: String) -> String {
        String(decoding: PercentDecoding.decode(text, malformed: .keepLiterally) ?? Array(text.utf8), as: UTF8.self)
    }

    /// The canonical absolute path with every symlink resolved, or nil if
    /// it does not exist.
    private static func resolve(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private enum ReadResult {
        case contents([UInt8])
        case notRegularFile
        case unreadable(String)
    }

    /// Reads a regular file. `O_NOFOLLOW` because the path is already fully
    /// resolved: a symlink appearing there now was swapped in after the
    /// containment check and is refused. (Swaps of parent directories in that
    /// window are not defended against; the served tree belongs to the
    /// operator, not to clients.)
    private static func readRegularFile(atPath path: String) -> ReadResult {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR || code == ELOOP { return .notRegularFile }
            return .unreadable(String(cString: strerror(code)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .unreadable(String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return .notRegularFile }
        guard info.st_size <= maxFileBytes else { return .unreadable("larger than \(maxFileBytes) bytes") }

        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(info.st_size))
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                return .unreadable(String(cString: strerror(errno)))
            }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maxFileBytes { return .unreadable("larger than \(maxFileBytes) bytes") }
        }
        return .contents(bytes)
    }
}
