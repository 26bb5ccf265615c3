import Foundation

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

/// A fresh directory under the system temporary directory, for one test's files.
public func makeTemporaryDirectory(prefix: String = "tandem-test") throws -> URL {
    let safePrefix = String(prefix.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("\(safePrefix)-\(UUID().uuidString.prefix(8))", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
