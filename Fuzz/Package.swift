// swift-tools-version:5.4
// Tools version 5.4 on purpose: from 5.5 on, SwiftPM renames an executable's entry point and links it
// with `--defsym main=<module>_main`, which collides with the `main` that `-sanitize=fuzzer` links
// in from libFuzzer. With 5.4 each harness is a plain module exporting `LLVMFuzzerTestOneInput`.
import PackageDescription

// libFuzzer harnesses for Tandem's parsers and pure state machines (issue 7).
//
// A nested package, so the root package's `swift build` / `swift test` are untouched: these targets
// only exist here, and they are only ever built with the fuzzer and address sanitizer
// (Fuzz/run.sh, `make fuzz`, the short pass of `make test`):
//
//   swift build --package-path Fuzz --scratch-path .build-fuzz -c release \
//       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing
//
// `-enable-testing` lets the hiredis and Yjs harnesses `@testable import` internals they check.
let harnesses: [(name: String, dependencies: [Target.Dependency])] = [
    ("fuzz-json", [.product(name: "TandemCore", package: "Tandem")]),
    ("fuzz-client-message", [.product(name: "TandemCore", package: "Tandem")]),
    ("fuzz-doc-replica", [.product(name: "TandemCore", package: "Tandem")]),
    ("fuzz-presence", [.product(name: "TandemCore", package: "Tandem")]),
    ("fuzz-hiredis-reply", [.product(name: "TandemRedis", package: "Tandem")]),
    ("fuzz-query-string", [.product(name: "TandemCore", package: "Tandem")]),
    ("fuzz-ops-route", [.product(name: "TandemCore", package: "Tandem")]),
    ("fuzz-yjs-update", [.product(name: "TandemYjs", package: "Tandem")]),
    ("fuzz-yjs-merge", [.product(name: "TandemYjs", package: "Tandem")]),
    ("fuzz-yjs-message", [.product(name: "TandemYjs", package: "Tandem")]),
    ("fuzz-yjs-room", [.product(name: "TandemCore", package: "Tandem"), .product(name: "TandemYjs", package: "Tandem")]),
    // NIO's decoder is the reference. Not through TandemServer: that would build the whole server, jwt-kit
    // and BoringSSL with the sanitizers, for one harness.
    ("fuzz-ws-frames", [
        .product(name: "TandemFraming", package: "Tandem"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
    ]),
    // The client's read shortcut (ServerTextFrameReader) against the client pipeline without it (no TLS
    // trait: no BoringSSL).
    ("fuzz-client-frames", [
        .product(name: "TandemClient", package: "Tandem"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
    ]),
]

let package = Package(
    name: "TandemFuzz",
    dependencies: [
        .package(name: "Tandem", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [.target(name: "FuzzSupport")]
        + harnesses.map { harness in
            .executableTarget(name: harness.name, dependencies: ["FuzzSupport"] + harness.dependencies)
        }
)
