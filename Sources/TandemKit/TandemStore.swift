import Foundation
import Logging
import TandemCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps what a doc needs to survive a process restart on disk, like `Web/client/tandem-offline.js` does in
/// IndexedDB: the confirmed records and their clock, the pushes not answered yet, the next push id and the
/// sessions this client's pushes went out on. A ``TandemConnection`` configured with a store (``TandemConfiguration/store``)
/// restores a doc from it on ``TandemConnection/join(_:presence:schema:)`` — the records at once, even
/// offline — and pushes the restored edits once connected; the catch-up recognises the ones the previous
/// process already got committed (by session and push id), so each edit commits exactly once.
///
/// One file per doc, `doc-<id>.json` in ``directory`` (`:` written as `=`), replaced atomically (written to a
/// temporary file, flushed, renamed over the old one): a crash leaves the old file or the new one, never half
/// of one. A file that cannot be read back (corrupt, another format, over ``maxBytesPerDoc``) is moved aside
/// to `….corrupt` with a warning on ``logger``, and the doc starts clean from the server. A doc whose state
/// outgrows ``maxBytesPerDoc`` is not stored (its file is removed, so a stale state never comes back) and
/// its ``TandemDocument/events()`` get ``DocumentEvent/storeFailed(_:)``.
///
/// Writes: before every push goes out (so the file names every push the server may commit, with the session
/// it went out on), and otherwise at most every ``writeDelay`` after a change (an edit made offline, a
/// commit) and at ``TandemConnection/close()``. Edits of the last ``writeDelay`` before a crash can be lost;
/// none is ever applied twice.
public struct TandemStore: Sendable {
    /// Where the files are; created if missing.
    public var directory: String
    /// Largest file written or read, in bytes. Default 64 MiB.
    public var maxBytesPerDoc: Int
    /// How long after a change the file is written (changes meanwhile are written together). Default 200 ms.
    public var writeDelay: Duration
    /// Where an unusable file (warning) and a failed write (error) are reported, with `tandem.doc` and
    /// `tandem.store.path` metadata. Default: label `tandem.kit.store`.
    public var logger: Logger

    public init(
        directory: String, maxBytesPerDoc: Int = 64 << 20, writeDelay: Duration = .milliseconds(200),
        logger: Logger = Logger(label: "tandem.kit.store")
    ) {
        precondition(maxBytesPerDoc > 0, "maxBytesPerDoc must be positive")
        self.directory = directory
        self.maxBytesPerDoc = maxBytesPerDoc
        self.writeDelay = writeDelay
        self.logger = logger
    }

    /// The file of `doc`, or nil for a doc id the protocol does not allow (never a path outside ``directory``).
    func path(_ doc: String) -> String? {
        guard (1...128).contains(doc.utf8.count),
            doc.utf8.allSatisfy({ Self.idBytes.contains($0) })
        else { return nil }
        return directory + "/doc-" + doc.replacingOccurrences(of: ":", with: "=") + ".json"
    }

    private static let idBytes = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-".utf8)

    /// Reads `doc`'s state; nil when there is none or it is unusable (then moved aside, with a warning).
    func load(_ doc: String) -> StoredDoc? {
        guard let path = path(doc), let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        do {
            guard let data = try handle.read(upToCount: maxBytesPerDoc + 1), !data.isEmpty else {
                throw TandemStoreError(doc: doc, message: "empty file")
            }
            guard data.count <= maxBytesPerDoc else {
                throw TandemStoreError(doc: doc, message: "file over maxBytesPerDoc (\(maxBytesPerDoc) bytes)")
            }
            let json: JSONValue
            do {
                json = try JSONParser.parse(Array(data), maxDepth: Wire.maxInboundDepth)
            } catch {
                throw TandemStoreError(doc: doc, message: "not JSON: \(error)")
            }
            return try StoredDoc(json: json, doc: doc)
        } catch {
            let reason = (error as? TandemStoreError)?.message ?? "\(error)"
            rename(path, path + ".corrupt")
            logger.warning(
                "unusable store file moved aside; the doc starts clean from the server",
                metadata: ["tandem.doc": "\(doc)", "tandem.store.path": "\(path)", "tandem.store.reason": "\(reason)"])
            return nil
        }
    }

    /// Replaces `doc`'s file with `state`, atomically.
    func save(_ state: StoredDoc) throws(TandemStoreError) {
        guard let path = path(state.doc) else { return }
        let bytes = state.json.serialized
        guard bytes.count <= maxBytesPerDoc else {
            remove(state.doc)
            throw TandemStoreError(
                doc: state.doc,
                message: "state of \(bytes.count) bytes is over maxBytesPerDoc (\(maxBytesPerDoc)); the doc is not stored")
        }
        try? FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.failure(state.doc, "cannot create \(temporary)") }
        var written = 0
        let ok = bytes.withUnsafeBytes { buffer -> Bool in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                written += n
            }
            // The data is on disk before the rename makes it the doc's file.
            return fsync(fd) == 0
        }
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            let failure = Self.failure(state.doc, "cannot write \(path)")
            unlink(temporary)
            throw failure
        }
    }

    /// Removes `doc`'s file (the doc was left, or its state is too large to store).
    func remove(_ doc: String) {
        guard let path = path(doc) else { return }
        unlink(path)
    }

    private static func failure(_ doc: String, _ what: String) -> TandemStoreError {
        TandemStoreError(doc: doc, message: "\(what): \(String(cString: strerror(errno)))")
    }
}

/// A doc's state in a ``TandemStore``, or why it could not be read or written.
public struct TandemStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public var doc: String
    public var message: String
    public var description: String { "store of \(doc): \(message)" }
}

/// What a ``TandemStore`` file holds for one doc.
struct StoredDoc: Sendable, Equatable {
    struct Push: Sendable, Equatable {
        var id: Int
        var ops: Ops
    }

    var doc: String
    var clock: UInt64
    var records: [String: JSONValue]
    /// Not answered yet, oldest first. The first may have been sent (and committed) by the previous process.
    var pending: [Push]
    /// Above every push id this client used for the doc.
    var nextPushID: Int
    /// Every session a push of this doc may have gone out on.
    var sessions: [String]

    static let format = 1

    var json: JSONValue {
        .object([
            "format": .number(Self.format),
            "doc": .string(doc),
            "clock": .number(clock),
            "records": .object(records),
            "pending": .array(pending.map { .object(["id": .number($0.id), "ops": $0.ops.json]) }),
            "nextPushID": .number(nextPushID),
            "sessions": .array(sessions.sorted().map { .string($0) }),
        ])
    }

    init(doc: String, clock: UInt64, records: [String: JSONValue], pending: [Push], nextPushID: Int, sessions: [String]) {
        self.doc = doc
        self.clock = clock
        self.records = records
        self.pending = pending
        self.nextPushID = nextPushID
        self.sessions = sessions
    }

    init(json: JSONValue, doc: String) throws(TandemStoreError) {
        func bad(_ what: String) -> TandemStoreError { TandemStoreError(doc: doc, message: what) }
        guard json["format"]?.intValue == Self.format else { throw bad("unknown format \(json["format"]?.serializedString ?? "none")") }
        guard json["doc"]?.stringValue == doc else { throw bad("the file is of another doc") }
        guard let clock = json["clock"]?.intValue, clock >= 0 else { throw bad("no clock") }
        guard let records = json["records"]?.objectValue, records.values.allSatisfy(\.isObject) else { throw bad("no records") }
        guard let nextPushID = json["nextPushID"]?.intValue, nextPushID > 0 else { throw bad("no nextPushID") }
        guard let sessions = json["sessions"]?.arrayValue?.compactMap(\.stringValue) else { throw bad("no sessions") }
        guard let pendingJSON = json["pending"]?.arrayValue else { throw bad("no pending") }
        var pending: [Push] = []
        for entry in pendingJSON {
            guard let id = entry["id"]?.intValue, id > 0, id < nextPushID, let opsJSON = entry["ops"] else { throw bad("a bad pending push") }
            do {
                pending.append(Push(id: id, ops: try Ops(json: opsJSON)))
            } catch {
                throw bad("pending push \(id): \(error.message)")
            }
        }
        self.init(doc: doc, clock: UInt64(clock), records: records, pending: pending, nextPushID: nextPushID, sessions: sessions)
    }
}
