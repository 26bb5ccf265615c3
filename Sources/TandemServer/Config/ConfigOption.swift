/// One `tandem serve` option: its name (the flag `--NAME` and the variable `TANDEM_NAME`), where its value
/// goes (a field of `ServerConfiguration` or of `LaunchSettings`; that field's type and initial value are the
/// option's type and default), how its text is read, the bounds it must keep, its unit, its section and its
/// help. `ServeOptions.all` lists them; the command line, the environment, `--help`, the validation of a
/// configuration, docs/configuration.md and README's option table are all made from that list.
///
/// Declare one with `ConfigOption.node(…)` (the value goes into `ServerConfiguration`) or
/// `ConfigOption.launch(…)` (the value is used by `tandem serve` itself: secrets, the embedded Redis,
/// logging); see `ServeOptions.swift`.
public struct ConfigOption: Sendable {
    /// `tick-ms`: the flag is `--tick-ms`, the environment variable `TANDEM_TICK_MS`.
    public let name: String
    public let section: ConfigSection
    /// One or two sentences: what the option does and what happens at its limit.
    public let help: String
    /// Shown after the flag in `--help` (`--tick-ms <ms>`); nil for a flag without a value.
    public let valueName: String?
    /// What the value is counted in, for the docs (`ms`, `bytes`, `per second`); nil when it is not a quantity.
    public let unit: ConfigUnit?
    /// The default as the docs show it (`50`, `8 MiB`, `a quarter of the memory`).
    public let defaultDescription: String
    /// The values accepted, for the docs (`5–1000`, `≥ 200`, `everysec, always`); nil when any value parses.
    public let boundsDescription: String?
    /// Listed in README's short option table (the full list is docs/configuration.md).
    public let featured: Bool

    /// Parses `text` into `settings`; the message says what the option takes.
    let assign: @Sendable (_ text: String, _ settings: inout ServeSettings) -> String?
    /// The bound this option's value breaks in `settings`, if any (the message names the flag).
    let violation: @Sendable (_ settings: ServeSettings) -> String?
    /// The same for a node option, checked on a `ServerConfiguration` alone (`ServerConfiguration.validate`).
    let nodeViolation: (@Sendable (_ configuration: ServerConfiguration) -> String?)?
    /// The option's value in `settings`, shown as the docs show values.
    let read: @Sendable (_ settings: ServeSettings) -> String

    /// This option's value in `settings`, written as the docs write values (`50`, `30d`, `on`). Secrets
    /// (`--jwt-secret`, `--ops-token`) included: never log it.
    public func value(in settings: ServeSettings) -> String { read(settings) }

    /// `--tick-ms`.
    public var flag: String { "--" + name }
    /// `TANDEM_TICK_MS`.
    public var environmentName: String { Self.environmentName(for: name) }
    /// A flag without a value (`--insecure-dev-mode`); in the environment 1/true/yes set it.
    public var isFlag: Bool { valueName == nil }

    public static func environmentName(for name: String) -> String {
        "TANDEM_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }
}

/// Where an option is listed in `--help` and docs/configuration.md, in this order.
public enum ConfigSection: String, CaseIterable, Sendable {
    case listeners = "Listeners and identity"
    case security = "Client authentication"
    case presence = "Presence"
    case connections = "Client connections"
    case admission = "Admission and reconnect storms"
    case sync = "Sync"
    case yjs = "Yjs (/yjs/{room})"
    case redis = "Redis"
    case ops = "Ops plane"
    case logging = "Logging"
}

/// What an option's number counts.
public enum ConfigUnit: String, Sendable {
    case milliseconds = "ms"
    case bytes = "bytes"
    case perSecond = "per second"
    case count = "count"
    /// A duration with its unit in the value (`90s`, `12h`, `30d`).
    case duration = "duration"
    /// A size with its unit in the value (`512MiB`, `2GiB`).
    case size = "size"
}

/// How the text of one kind of value is read and shown.
public struct ConfigFormat<Value: Sendable>: Sendable {
    /// Shown after the flag in `--help` (`<ms>`).
    public var valueName: String
    /// Completes "--NAME takes …" when the text does not parse.
    public var expectation: String
    public var parse: @Sendable (String) -> Value?
    public var describe: @Sendable (Value) -> String

    public init(
        valueName: String, expectation: String, parse: @escaping @Sendable (String) -> Value?,
        describe: @escaping @Sendable (Value) -> String
    ) {
        self.valueName = valueName
        self.expectation = expectation
        self.parse = parse
        self.describe = describe
    }
}

extension ConfigFormat where Value == Int {
    /// A whole number (`Int(text)`, as swift-argument-parser read it).
    public static func integer(_ valueName: String = "n") -> Self {
        Self(valueName: valueName, expectation: "a whole number", parse: { Int($0) }, describe: { "\($0)" })
    }
}

extension ConfigFormat where Value == Int? {
    /// A whole number, or nil when the option is not given (its default is worked out at start).
    public static func optionalInteger(_ valueName: String = "n") -> Self {
        Self(
            valueName: valueName, expectation: "a whole number", parse: { text -> Int?? in Int(text).map { .some($0) } },
            describe: { $0.map { "\($0)" } ?? "none" })
    }
}

extension ConfigFormat where Value == Double {
    public static func number(_ valueName: String = "n") -> Self {
        Self(
            valueName: valueName, expectation: "a number", parse: { Double($0).flatMap { $0.isFinite ? $0 : nil } },
            describe: { $0 == $0.rounded() ? "\(Int($0))" : "\($0)" })
    }
}

extension ConfigFormat where Value == String {
    public static func text(_ valueName: String) -> Self {
        Self(valueName: valueName, expectation: "a value", parse: { $0 }, describe: { $0 })
    }
}

extension ConfigFormat where Value == String? {
    public static func optionalText(_ valueName: String) -> Self {
        Self(valueName: valueName, expectation: "a value", parse: { $0 }, describe: { $0 ?? "none" })
    }
}

extension ConfigFormat where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
    /// One of an enum's raw values (`batch`, `per-commit`); the parse error lists them.
    public static func choice(_ valueName: String) -> Self {
        let names = Value.allCases.map(\.rawValue)
        let listed = names.count == 2 ? "\(names[0]) or \(names[1])" : "one of " + names.joined(separator: ", ")
        return Self(valueName: valueName, expectation: listed, parse: { Value(rawValue: $0) }, describe: { $0.rawValue })
    }
}

extension ConfigFormat where Value == [String] {
    /// Comma-separated; blanks around items and empty items are dropped.
    public static func list(_ valueName: String) -> Self {
        Self(
            valueName: valueName, expectation: "a comma-separated list",
            parse: { text in
                text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            },
            describe: { $0.isEmpty ? "none" : $0.joined(separator: ",") })
    }
}

extension ConfigFormat where Value == Int64 {
    /// Milliseconds written with a unit (`90s`, `12h`, `30d`) or `0`: `OptionValues.durationMs`.
    public static var duration: Self {
        Self(
            valueName: "duration", expectation: "0 or a duration: 90s, 12h, 30d", parse: OptionValues.durationMs,
            describe: OptionValues.describe(durationMs:))
    }
}

extension ConfigFormat where Value == UInt64? {
    /// Bytes, plain or with a binary unit (`512MiB`, `2GiB`): `OptionValues.bytes`.
    public static var size: Self {
        Self(
            valueName: "size", expectation: "bytes or a size such as 512MiB or 2GiB (0: no limit)",
            parse: { OptionValues.bytes($0).map { Optional($0) } },
            describe: { $0.map(OptionValues.describe(bytes:)) ?? "none" })
    }
}

/// The bounds an option's value must keep; the message is made from them (`--tick-ms must be 5–1000`).
public struct ConfigBounds<Value: Sendable>: Sendable {
    let accepts: @Sendable (Value) -> Bool
    /// Completes "--NAME must be …".
    let requirement: String
    /// For the docs' bounds column.
    let summary: String

    public init(accepts: @escaping @Sendable (Value) -> Bool, requirement: String, summary: String) {
        self.accepts = accepts
        self.requirement = requirement
        self.summary = summary
    }
}

extension ConfigBounds where Value: Comparable & Sendable {
    public static func atLeast(_ minimum: Value) -> Self {
        Self(accepts: { $0 >= minimum }, requirement: "at least \(minimum)", summary: "≥ \(minimum)")
    }

    public static func within(_ range: ClosedRange<Value>) -> Self {
        Self(
            accepts: { range.contains($0) }, requirement: "\(range.lowerBound)–\(range.upperBound)",
            summary: "\(range.lowerBound)–\(range.upperBound)")
    }
}

extension ConfigBounds where Value == Int? {
    /// Unset, or within `range`.
    public static func within(_ range: ClosedRange<Int>) -> Self {
        Self(
            accepts: { $0.map(range.contains) ?? true }, requirement: "\(range.lowerBound)–\(range.upperBound)",
            summary: "\(range.lowerBound)–\(range.upperBound)")
    }
}

extension ConfigBounds where Value == String {
    public static func oneOf(_ choices: [String]) -> Self {
        let listed = choices.count == 2 ? "\(choices[0]) or \(choices[1])" : "one of " + choices.joined(separator: ", ")
        return Self(accepts: { choices.contains($0) }, requirement: listed, summary: choices.joined(separator: ", "))
    }
}

extension ConfigBounds where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
    /// Any of the enum's cases (`ConfigFormat.choice` refuses other text): names them in the docs.
    public static var anyCase: Self {
        let names = Value.allCases.map(\.rawValue)
        return Self(accepts: { _ in true }, requirement: names.joined(separator: " or "), summary: names.joined(separator: ", "))
    }
}

extension ConfigOption {
    /// An option whose value goes into the node's `ServerConfiguration` field `path`; that field's initial
    /// value is the default. Its bounds are checked by `ServerConfiguration.validate()` as well, so a
    /// configuration built in code keeps them too.
    public static func node<Value: Sendable>(
        _ name: String, _ path: WritableKeyPath<ServerConfiguration, Value> & Sendable, _ format: ConfigFormat<Value>,
        bounds: ConfigBounds<Value>? = nil, unit: ConfigUnit? = nil, section: ConfigSection, featured: Bool = false,
        default defaultDescription: String? = nil, help: String
    ) -> ConfigOption {
        let flag = "--" + name
        let check: @Sendable (ServerConfiguration) -> String? = { configuration in
            guard let bounds, !bounds.accepts(configuration[keyPath: path]) else { return nil }
            return "\(flag) must be \(bounds.requirement)"
        }
        return ConfigOption(
            name: name, section: section, help: help, valueName: format.valueName, unit: unit,
            defaultDescription: defaultDescription ?? format.describe(ServerConfiguration.defaults[keyPath: path]),
            boundsDescription: bounds?.summary, featured: featured,
            assign: { text, settings in
                guard let value = format.parse(text) else { return "\(flag) takes \(format.expectation), not '\(text)'" }
                settings.node[keyPath: path] = value
                return nil
            },
            violation: { check($0.node) }, nodeViolation: check, read: { format.describe($0.node[keyPath: path]) })
    }

    /// A boolean node option: a flag without a value (`--insecure-dev-mode`); off by default.
    public static func nodeFlag(
        _ name: String, _ path: WritableKeyPath<ServerConfiguration, Bool> & Sendable, section: ConfigSection,
        featured: Bool = false, help: String
    ) -> ConfigOption {
        ConfigOption(
            name: name, section: section, help: help, valueName: nil, unit: nil, defaultDescription: "off",
            boundsDescription: nil, featured: featured,
            assign: { _, settings in
                settings.node[keyPath: path] = true
                return nil
            },
            violation: { _ in nil }, nodeViolation: nil, read: { $0.node[keyPath: path] ? "on" : "off" })
    }

    /// An option `tandem serve` uses itself (where the secret comes from, the embedded Redis, logging): its
    /// value goes into the `LaunchSettings` field `path`, whose initial value is the default.
    public static func launch<Value: Sendable>(
        _ name: String, _ path: WritableKeyPath<LaunchSettings, Value> & Sendable, _ format: ConfigFormat<Value>,
        bounds: ConfigBounds<Value>? = nil, unit: ConfigUnit? = nil, section: ConfigSection, featured: Bool = false,
        default defaultDescription: String? = nil, help: String
    ) -> ConfigOption {
        let flag = "--" + name
        return ConfigOption(
            name: name, section: section, help: help, valueName: format.valueName, unit: unit,
            defaultDescription: defaultDescription ?? format.describe(LaunchSettings()[keyPath: path]),
            boundsDescription: bounds?.summary, featured: featured,
            assign: { text, settings in
                guard let value = format.parse(text) else { return "\(flag) takes \(format.expectation), not '\(text)'" }
                settings.launch[keyPath: path] = value
                return nil
            },
            violation: { settings in
                guard let bounds, !bounds.accepts(settings.launch[keyPath: path]) else { return nil }
                return "\(flag) must be \(bounds.requirement)"
            },
            nodeViolation: nil, read: { format.describe($0.launch[keyPath: path]) })
    }
}
