import Foundation
import Testing
import TandemServer
import TandemTestSupport

/// Issue 9: docs/configuration.md and README's option table are made from the option declarations
/// (`ServeOptions`); this fails when either says something else. To update both after changing a
/// declaration: `TANDEM_UPDATE_DOCS=1 swift test --skip-build --filter ConfigurationDocsTests`.
@Suite struct ConfigurationDocsTests {
    static let update = ProcessInfo.processInfo.environment["TANDEM_UPDATE_DOCS"] == "1"

    @Test func configurationMarkdownIsTheDeclarations() throws {
        let url = PackagePaths.root.appendingPathComponent("docs/configuration.md")
        let expected = ServeOptions.configurationMarkdown()
        if Self.update { try expected.write(to: url, atomically: true, encoding: .utf8) }
        let actual = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        #expect(actual == expected, "docs/configuration.md differs from ServeOptions; regenerate it (see the suite's comment)")
        // Every option is in it, with its variable.
        for option in ServeOptions.all {
            #expect(actual.contains("| `\(option.flag)` | `\(option.environmentName)` |"), "\(option.flag)")
        }
    }

    @Test func readmeOptionTableIsTheDeclarations() throws {
        let url = PackagePaths.root.appendingPathComponent("README.md")
        var readme = try String(contentsOf: url, encoding: .utf8)
        let markers = ServeOptions.readmeTableMarkers
        let begin = try #require(readme.range(of: markers.begin + "\n"), "README has the table's opening marker")
        let end = try #require(readme.range(of: markers.end, range: begin.upperBound..<readme.endIndex), "and its closing one")
        let expected = ServeOptions.readmeTable()
        if Self.update {
            readme.replaceSubrange(begin.upperBound..<end.lowerBound, with: expected)
            try readme.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        #expect(String(readme[begin.upperBound..<end.lowerBound]) == expected, "README's option table differs from ServeOptions")
        #expect(readme.contains("docs/configuration.md"), "README points to the full list")
    }

    /// Every `--option` README or the operations guide names in code is one `tandem serve` or `tandem token`
    /// takes (a renamed or removed option cannot linger in the docs).
    /// Every limit is a named option with bounds: a quantity without them would take 0 or a negative
    /// number and misbehave instead of failing at start-up. The exceptions are bounded by a rule between
    /// options (`ServerConfiguration.rules`).
    @Test func everyQuantityDeclaresItsBounds() {
        let boundedByRules: Set<String> = ["ops-max-connections-per-ip", "max-outbound-bytes"]
        let unbounded = ServeOptions.all.filter { option in
            option.unit != nil && option.boundsDescription == nil && !boundedByRules.contains(option.name)
                && option.unit != .size && option.unit != .duration
        }
        #expect(unbounded.map(\.name) == [], "declare bounds: for these")
    }

    @Test func theDocsNameOnlyOptionsThatExist() throws {
        let token = ["--secret", "--secret-file", "--user", "--name", "--doc", "--ttl", "--help"]
        let known = Set(ServeOptions.all.map(\.flag) + token)
        for file in ["README.md", "docs/operations.md", "docs/configuration.md"] {
            let text = try String(contentsOf: PackagePaths.root.appendingPathComponent(file), encoding: .utf8)
            // Only `tandem …` command lines and `--option` in backticks: the bench's flags appear in its own lines.
            var named: Set<String> = []
            for match in text.matches(of: /`(--[a-z0-9-]+)[` =]/) { named.insert(String(match.output.1)) }
            for line in text.split(separator: "\n") where line.contains("tandem serve") || line.contains("tandem token") {
                for match in line.matches(of: /(?:^|[^a-z-])(--[a-z0-9-]+)/) { named.insert(String(match.output.1)) }
            }
            for flag in named.sorted() where !known.contains(flag) {
                Issue.record("\(file) names \(flag), which tandem serve and tandem token do not take")
            }
        }
    }
}
