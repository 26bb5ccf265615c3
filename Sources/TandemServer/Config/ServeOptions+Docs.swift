/// The texts made from the declarations: `tandem serve --help`, docs/configuration.md and README's option
/// table. ConfigurationDocsTests compares the two documents with these.
extension ServeOptions {
    /// `tandem serve --help`.
    public static func helpText() -> String {
        var lines = [
            "OVERVIEW: Run a Tandem node (with an embedded redis-server unless --redis is given).",
            "",
            "USAGE: tandem serve [--<option> <value>]…",
            "",
            "Every option can also be set as TANDEM_<NAME> in the environment (--tick-ms: TANDEM_TICK_MS; a flag with",
            "1, true or yes); the command line wins. docs/configuration.md lists them with their bounds.",
        ]
        for section in ConfigSection.allCases {
            let options = all.filter { $0.section == section }
            guard !options.isEmpty else { continue }
            lines += ["", section.rawValue.uppercased() + ":"]
            for option in options {
                let usage = option.flag + (option.valueName.map { " <\($0)>" } ?? "")
                var details = "default: \(option.defaultDescription)"
                if let bounds = option.boundsDescription { details += "; \(bounds)" }
                lines.append("  \(usage)")
                lines.append("        \(option.help) (\(details))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// docs/configuration.md.
    public static func configurationMarkdown() -> String {
        var text = """
            # Configuration

            <!-- Generated from Sources/TandemServer/Config/ServeOptions.swift: edit the declarations there, then
                 run `TANDEM_UPDATE_DOCS=1 swift test --skip-build --filter ConfigurationDocsTests`. -->

            Every option of `tandem serve` is a flag, `--NAME VALUE` or `--NAME=VALUE`, and an environment variable
            `TANDEM_NAME` (upper case, `-` as `_`); the command line wins. A flag without a value
            (`--insecure-dev-mode`) is set in the environment with `1`, `true` or `yes` (`0`, `false`, `no` or
            empty: not set). A value that does not parse or is out of bounds stops the start with a message that
            names the option. `tandem serve --help` prints the same list.

            Durations take a unit: `ms`, `s`, `m`, `h`, `d` (`90s`, `30d`; `0` alone). Sizes take bytes or a binary
            unit: `KiB`, `MiB`, `GiB`, `TiB` (also `K`/`KB`…, any case; all powers of 1024).

            How an option reaches the code, and how to add one: [architecture.md](architecture.md#configuration).

            """
        for section in ConfigSection.allCases {
            let options = all.filter { $0.section == section }
            guard !options.isEmpty else { continue }
            text += "\n## \(section.rawValue)\n\n"
            text += "| option | environment | default | bounds | unit | what it does |\n"
            text += "| --- | --- | --- | --- | --- | --- |\n"
            for option in options {
                let cells = [
                    "`\(option.flag)`", "`\(option.environmentName)`", cell(option.defaultDescription),
                    option.boundsDescription.map(cell) ?? "", option.unit?.rawValue ?? "", cell(option.help),
                ]
                text += "| " + cells.joined(separator: " | ") + " |\n"
            }
        }
        text += "\n## Rules between options\n\n"
        text += "Checked at start-up with the bounds above; the first one broken is the message.\n\n"
        for rule in ServerConfiguration.rules { text += "- \(cell(rule.summary))\n" }
        return text
    }

    /// The option table README.md shows: the featured options, in declaration order.
    public static func readmeTable() -> String {
        var text = "| option | default | what it does |\n| --- | --- | --- |\n"
        for option in all where option.featured {
            text += "| `\(option.flag)` | \(cell(option.defaultDescription)) | \(cell(option.help)) |\n"
        }
        return text
    }

    /// README's table sits between these two lines.
    public static let readmeTableMarkers = (
        begin: "<!-- options: generated from ServeOptions (ConfigurationDocsTests); docs/configuration.md has all -->",
        end: "<!-- end of options -->"
    )

    /// Text for a Markdown table cell: `|` escaped, option names and TANDEM_ variables as code.
    private static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|")
            .replacing(/--[a-z0-9-]*[a-z0-9]|TANDEM_[A-Z0-9_]*[A-Z0-9]/) { "`\($0.output)`" }
    }
}
