import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Places in the package checkout, found from this source file's path.
public enum PackagePaths {
    /// The directory holding `Package.swift`: the first such directory above this file.
    public static let root: URL = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory.deleteLastPathComponent()
        }
        fatalError("no Package.swift above \(#filePath)")
    }()
}

/// Files a test keeps after it ends (logs, screenshots), under `<package root>/test-artifacts`.
/// The directory is git-ignored.
public enum TestArtifacts {
    /// `<package root>/test-artifacts`, created if missing.
    public static var directory: URL {
        let url = PackagePaths.root.appendingPathComponent("test-artifacts", isDirectory: true)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// `directory/name`, for a file to write.
    public static func file(named name: String) -> URL {
        self.directory.appendingPathComponent(name)
    }
}

/// A fresh directory for one test's files, inside ``TestTemporaryRoot`` (removed when the test process
/// exits, whether or not the test removes it).
public func makeTemporaryDirectory(prefix: String = "tandem-test") throws -> URL {
    let safePrefix = String(prefix.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
    let url = TestTemporaryRoot.url
        .appendingPathComponent("\(safePrefix)-\(UUID().uuidString.prefix(8))", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The one directory under the system temporary directory that holds every temporary directory this
/// test process makes (``makeTemporaryDirectory(prefix:)``: children's logs, Redis data, secrets, schema
/// files), `tandem-tests-<pid>-<random>`. It is removed at exit, so a test that fails, throws or forgets
/// leaves nothing behind; a process that crashed leaves its root, which the next test process removes
/// (a root whose pid is no longer running). Before this, full runs left thousands of directories in /tmp.
public enum TestTemporaryRoot {
    static let prefix = "tandem-tests-"

    /// Created on first use; removed by an `atexit` handler registered then.
    public static let url: URL = {
        removeRootsOfEndedProcesses()
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)\(getpid())-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: TestTemporaryRoot.url) }
        return url
    }()

    /// Removes the roots left by test processes that did not exit normally (a crash, SIGKILL).
    static func removeRootsOfEndedProcesses() {
        let base = FileManager.default.temporaryDirectory
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: base.path) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }) else { continue }
            // ESRCH: no such process (EPERM would mean it runs under another user: leave it).
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: base.appendingPathComponent(name))
            }
        }
    }
}
