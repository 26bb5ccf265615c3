import Foundation

/// Where the HS256 secret comes from, and the checks every source shares (`tandem serve` and
/// `tandem token` use the same rules, so a secret one accepts the other accepts too).
///
/// Sources, in the order an operator should prefer them: `--jwt-secret-file PATH` (or
/// `TANDEM_JWT_SECRET_FILE`), the `TANDEM_JWT_SECRET` environment variable, `--jwt-secret S`. A secret
/// on the command line is visible to every local user in `ps` and `/proc/PID/cmdline`; the environment
/// of a process is readable only by its owner (and root).
public enum JWTSecret {
    /// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
    public static let minimumBytes = 32
    /// A secret file is a few dozen bytes; refuse to read anything absurdly large (a wrong path such as
    /// a log file or a device).
    public static let maxFileBytes = 64 * 1024

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var message: String
        public var description: String { message }
    }

    /// A secret read from a file, with a warning when the file is readable by others.
    public struct Loaded: Equatable {
        public var secret: String
        /// Set when the file's mode lets its group or everyone read it.
        public var warning: String?
    }

    /// Reads the secret from `path`: the whole file, minus trailing line breaks (`\n` or `\r\n`, as
    /// `echo` and editors leave them); other whitespace is part of the secret.
    ///
    /// A file readable by its group or by everyone is accepted with a warning, not refused: the common
    /// secret mounts are exactly that by default (Kubernetes secret volumes 0644, Docker and Swarm
    /// secrets 0444) inside a container that runs nothing else, and refusing them would push operators
    /// back to `--jwt-secret` on the command line, which every local user can read in `ps`.
    public static func load(fromFile path: String, flag: String = "--jwt-secret-file") throws -> Loaded {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Failure(message: "\(flag) \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & 0o170000) == 0o100000 /* S_ISREG */ else { throw Failure(message: "\(flag) \(path): not a regular file") }
        guard info.st_size <= maxFileBytes else {
            throw Failure(message: "\(flag) \(path): \(info.st_size) bytes; a secret file holds at most \(maxFileBytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(message: "\(flag) \(path): cannot read it (permissions?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Failure(message: "\(flag) \(path): not UTF-8 text")
        }
        var secret = Substring(text)
        while let last = secret.last, last == "\n" || last == "\r" || last == "\r\n" { secret = secret.dropLast() }
        try check(String(secret), source: "\(flag) \(path)")
        var warning: String?
        if info.st_mode & 0o044 != 0 {  // S_IRGRP | S_IROTH: others may read it
            warning = "\(flag) \(path) is readable by its group or by everyone (mode \(String(info.st_mode & 0o777, radix: 8)));"
                + " chmod 600 it unless only this service can reach it"
        }
        return Loaded(secret: String(secret), warning: warning)
    }

    /// Refuses an empty or short secret with a message naming where it came from.
    public static func check(_ secret: String, source: String) throws {
        guard !secret.isEmpty else { throw Failure(message: "\(source): the secret is empty") }
        let bytes = secret.utf8.count
        guard bytes >= minimumBytes else {
            throw Failure(
                message: "\(source): the secret is \(bytes) bytes; HS256 needs at least \(minimumBytes) (RFC 7518 §3.2)."
                    + " Make one with: openssl rand -hex 32")
        }
    }
}
