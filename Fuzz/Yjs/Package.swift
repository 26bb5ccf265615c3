// swift-tools-version:5.4
// Tools version 5.4 on purpose: from 5.5 on, SwiftPM links every executable with
// `--defsym main=<module>_main`, which collides with the `main` libFuzzer brings in; with 5.4 each
// harness is a plain module exporting `LLVMFuzzerTestOneInput`.
import PackageDescription

// libFuzzer harnesses for TandemYjs (issue 10). A nested package, so the root package's build and
// tests never see these targets; built only with the fuzzer and address sanitizer (run.sh):
//
//   swift build --package-path Fuzz/Yjs --scratch-path .build-fuzz-yjs -c release \
//       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing
let harnesses = ["fuzz-yjs-update", "fuzz-yjs-merge", "fuzz-yjs-message"]

let package = Package(
    name: "TandemYjsFuzz",
    dependencies: [.package(name: "Tandem", path: "../..")],
    targets: harnesses.map { name in
        .executableTarget(name: name, dependencies: [.product(name: "TandemYjs", package: "Tandem")])
    }
)
