import Foundation

/// Executables this package builds, found beside the running test bundle.
public enum BuiltProducts {
    public struct NotFound: Error, CustomStringConvertible {
        public let name: String
        public let searched: [String]

        public var description: String {
            "built product '\(name)' not found; build it first (`swift build --product \(name)`). Looked in:\n"
                + self.searched.map { "  \($0)" }.joined(separator: "\n")
        }
    }

    /// The path of the executable product `name` (for example `tandem`).
    ///
    /// Looks, in order, in `$TANDEM_BUILT_PRODUCTS_DIR` if set; in the directory of the running
    /// test binary or `.xctest` bundle (`.build/<triple>/debug` under `swift test`); then in the
    /// package's `.build/debug`, `.build/<triple>/debug`, and the `release` equivalents.
    /// - Throws: ``NotFound`` listing every directory searched.
    public static func executable(named name: String) throws -> String {
        var searched: [String] = []
        for directory in self.candidateDirectories() where !searched.contains(directory.path) {
            searched.append(directory.path)
            let candidate = directory.appendingPathComponent(name).path
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory),
                !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
        }
        throw NotFound(name: name, searched: searched)
    }

    private static func candidateDirectories() -> [URL] {
        var directories: [URL] = []
        if let override = ProcessInfo.processInfo.environment["TANDEM_BUILT_PRODUCTS_DIR"], !override.isEmpty {
            directories.append(URL(fileURLWithPath: override))
        }

        // The test binary itself: on Linux `.build/<triple>/debug/<Package>PackageTests.xctest` is
        // an executable; on macOS it is a bundle loaded by `xctest`, whose directory holds the products.
        if let executable = Bundle.main.executableURL {
            directories.append(executable.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        if let argument0 = CommandLine.arguments.first, !argument0.isEmpty {
            directories.append(URL(fileURLWithPath: argument0).resolvingSymlinksInPath().deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append(URL(fileURLWithPath: bundle.bundlePath).deletingLastPathComponent())
        }

        // Fallback: the package's own build folder.
        let build = PackagePaths.root.appendingPathComponent(".build")
        let triples = ((try? FileManager.default.contentsOfDirectory(atPath: build.path)) ?? [])
            .filter { $0.contains("-") && !$0.hasPrefix(".") }
            .sorted()
        for configuration in ["debug", "release"] {
            directories.append(build.appendingPathComponent(configuration))
            for triple in triples {
                directories.append(build.appendingPathComponent(triple).appendingPathComponent(configuration))
            }
        }
        return directories
    }
}
