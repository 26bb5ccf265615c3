// swift-tools-version: 6.1
import PackageDescription

// Tandem: presence, cursor broadcast and document sync relay.
//
// Layout (one job per module; only the module that owns a C library imports it):
//   CHiredis, CMicroHTTPD, CZlib, CBzip2  system libraries (module.modulemap + shim.h)
//   TandemCore             pure protocol, JSON, presence, sync and Yjs-room state machines (no I/O;
//                          TandemSystem for percent-decoding, TandemYjs for the Yjs room's document)
//   TandemYjs              pure Yjs update v1 / y-protocols codec: state vectors, merge, diff (no I/O)
//   TandemSystem           what every module shares from the OS: the clock, child processes (and the
//                          redis-server launcher), percent-decoding; no dependencies
//   TandemRedis            hiredis client: owner thread per connection, pipelining, pub/sub
//   TandemOpsHTTP          libmicrohttpd server for the ops plane
//   TandemServer           SwiftNIO WebSocket data plane, doc shards, Redis stores, metrics
//   TandemClient           SwiftNIO WebSocket client used by tandem-bench and the tests
//   tandem, tandem-bench   executables
// The push path runs through generic code of TandemCore (the push pipeline, its actions) and TandemRedis
// from TandemServer. Without cross-module optimization none of it is specialized across the module
// boundary, and looking up generic type metadata at run time was a visible share of each commit's cost
// (profiled with callgrind, docs/benchmarks.md).
let crossModuleOptimization: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "Tandem",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tandem", targets: ["tandem"]),
        .executable(name: "tandem-bench", targets: ["tandem-bench"]),
        // The Swift client library for apps (docs/client-swift.md): `.product(name: "TandemKit", package: "Tandem")`.
        .library(name: "TandemKit", targets: ["TandemKit"]),
        .executable(name: "tandem-watch", targets: ["tandem-watch"]),
        // Only for the fuzz package (Fuzz/Package.swift depends on this one by path and can reach
        // targets only through products). Not a public API: nothing outside this repository uses them
        // (TandemKit's users get TandemCore's JSONValue and OPS types through TandemKit's typealiases).
        .library(name: "TandemCore", targets: ["TandemCore"]),
        .library(name: "TandemRedis", targets: ["TandemRedis"]),
        .library(name: "TandemServer", targets: ["TandemServer"]),
        .library(name: "TandemYjs", targets: ["TandemYjs"]),
        .library(name: "TandemFraming", targets: ["TandemFraming"]),
        .library(name: "TandemClient", targets: ["TandemClient"]),
    ],
    // `TLS` adds `wss://` to TandemClient and TandemKit (docs/client-swift.md) through swift-nio-ssl. Off by
    // default: swift-nio-ssl compiles BoringSSL, minutes on every fresh build, which `make test` and apps on
    // plain `ws://` behind a TLS-terminating proxy do not need. An app turns it on with
    // `.package(url: …, traits: ["TLS"])`; `make test-tls` builds and runs the wss tests.
    traits: [
        .trait(name: "TLS", description: "wss:// in TandemClient and TandemKit (builds swift-nio-ssl and BoringSSL)")
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // zlib: the compressed segments and checkpoints of doc history (issue 15, docs/history.md).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // bzip2: history blobs of kind `b` (docs/history.md): its block sorting takes a third off the ops'
        // size that zlib leaves. No pkg-config file on Debian: the header and `-lbz2` are in the default paths.
        .systemLibrary(
            name: "CBzip2",
            providers: [.apt(["libbz2-dev"])]
        ),
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .target(name: "TandemCore", dependencies: ["TandemSystem", "TandemYjs"], swiftSettings: crossModuleOptimization),
        .target(name: "TandemYjs"),
        // How `/v1/ws` reads client frames (InboundFrameDecoder, FrameUnmasker): NIO only, so that the
        // fuzz-ws-frames harness, which checks it against NIO's decoder, builds without the server (make
        // test's fuzz pass spent ~5 of its ~10 minutes building TandemServer, jwt-kit and BoringSSL for it).
        .target(
            name: "TandemFraming",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: crossModuleOptimization
        ),
        .target(name: "TandemSystem"),
        .target(
            name: "TandemRedis",
            dependencies: [
                "CHiredis",
                "TandemSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: crossModuleOptimization
        ),
        .target(
            name: "TandemOpsHTTP",
            dependencies: [
                "CMicroHTTPD",
                "TandemSystem",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TandemServer",
            dependencies: [
                "TandemCore",
                "TandemRedis",
                "TandemYjs",
                "TandemOpsHTTP",
                "TandemFraming",
                "CZlib",
                "CBzip2",
                "TandemSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "TandemClient",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["TLS"])),
            ]
        ),
        // The client library: protocol v1 as tandem.js speaks it (presence, records, rebase rules, reconnect),
        // on TandemClient's WebSocket transport and TandemCore's JSON and OPS types (no server code).
        .target(
            name: "TandemKit",
            dependencies: [
                "TandemClient",
                "TandemCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // TandemStore's warnings (an unusable file, a failed write).
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["TLS"])),
            ]
        ),
        // The example a Swift developer can copy (Examples/tandem-watch): joins a doc, prints members and
        // record changes live, sets a cursor and edits records from stdin.
        .executableTarget(name: "tandem-watch", dependencies: ["TandemKit"], path: "Examples/tandem-watch"),
        // Helpers shared by the test targets: child processes (redis-server, tandem), polling, ports.
        .target(name: "TandemTestSupport", dependencies: ["TandemSystem"], path: "Tests/Support"),
        // Test-only: counts heap allocations per thread for the allocation-counting tests (issue 14).
        .target(name: "TandemAllocationCounter", path: "Tests/AllocationCounter"),
        .executableTarget(
            name: "tandem",
            dependencies: [
                "TandemServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            // The node allocates through jemalloc instead of glibc's malloc (libjemalloc-dev; docs/architecture.md,
            // "Memory allocator"): under load glibc's malloc and free were ~15 % of the node's CPU. Linked in
            // debug builds too, so the tests that start a `tandem` process run it as shipped; a sanitizer build's
            // allocator is in the executable itself and takes precedence over the library's.
            linkerSettings: [.linkedLibrary("jemalloc", .when(platforms: [.linux]))]
        ),
        .executableTarget(
            name: "tandem-bench",
            dependencies: [
                "TandemClient",
                "TandemCore",
                // `presence --trace-pubsub` subscribes to the docs' channels itself.
                "TandemRedis",
                // `tandem-bench fuzz` starts its own redis-server and nodes with the tests' process helpers.
                "TandemTestSupport",
                "TandemSystem",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // `tandem-bench bare-server`, the bare fan-out server issue 14 is measured against.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // Merge / diff / state-vector costs of TandemYjs on large documents (figures, no assertions).
        .executableTarget(name: "tandem-yjs-bench", dependencies: ["TandemYjs"]),
        .testTarget(name: "TandemCoreTests", dependencies: ["TandemCore", "TandemYjs"]),
        // tandem-bench's own byte scans against what a parse of the same message reads, its histogram deltas,
        // and the bare sync relay through real sockets and a real redis-server.
        .testTarget(
            name: "TandemBenchTests",
            dependencies: [
                "tandem-bench", "TandemClient", "TandemTestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // TandemKit's pure parts (record store and rebase, push queue, coalescing, backoff, presence throttle).
        .testTarget(name: "TandemKitTests", dependencies: ["TandemKit", "TandemCore"]),
        .testTarget(name: "TandemYjsTests", dependencies: ["TandemYjs", "TandemTestSupport"]),
        .testTarget(
            name: "TandemSystemTests",
            dependencies: ["TandemSystem", "TandemTestSupport", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "TandemRedisTests",
            dependencies: [
                "TandemRedis", "TandemTestSupport",
                // The script digest is checked against swift-crypto's SHA-1 (TandemRedis has its own).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TandemOpsHTTPTests",
            dependencies: ["TandemOpsHTTP", "TandemTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "TandemClientTests",
            dependencies: [
                "TandemClient",
                "TandemTestSupport",
                // The raw server of the close-right-after-upgrade test computes Sec-WebSocket-Accept (SHA-1).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TandemServerTests",
            dependencies: [
                "TandemServer", "TandemClient", "TandemTestSupport", "TandemSystem", "TandemYjs", "TandemRedis",
                "TandemAllocationCounter", "TandemKit", "TandemFraming",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                // The wss tests' TLS-terminating proxy (`make test-tls`).
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["TLS"])),
            ]
        ),
    ]
)
