/// Why `tandem serve`'s options were refused: the message names the option (and the variable, for a value
/// from the environment).
public struct ConfigUsageError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension ServeOptions {
    static let byName: [String: ConfigOption] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// Reads `arguments` (`--NAME VALUE`, `--NAME=VALUE`, `--FLAG`) and then, for every option the command
    /// line did not give, `TANDEM_NAME` from `environment`; checks every option's bounds.
    ///
    /// A repeated option keeps its last value. Variables that name no option are ignored (the tests and tools
    /// use `TANDEM_*` names of their own).
    public static func parse(arguments: [String], environment: [String: String]) throws(ConfigUsageError) -> ServeSettings {
        var settings = ServeSettings()
        var given: Set<String> = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw ConfigUsageError("unexpected argument '\(argument)'")
            }
            let body = argument.dropFirst(2)
            let name = String(body.prefix { $0 != "=" })
            let inline = body.firstIndex(of: "=").map { String(body[body.index(after: $0)...]) }
            guard let option = byName[name] else { throw ConfigUsageError("unknown option '--\(name)'") }
            let value: String
            if option.isFlag {
                guard inline == nil else { throw ConfigUsageError("\(option.flag) takes no value") }
                value = ""
            } else if let inline {
                value = inline
            } else {
                guard index < arguments.count, !arguments[index].hasPrefix("--") else {
                    throw ConfigUsageError("missing value for \(option.flag) <\(option.valueName ?? "value")>")
                }
                value = arguments[index]
                index += 1
            }
            if let message = option.assign(value, &settings) { throw ConfigUsageError(message) }
            given.insert(name)
        }

        for option in all where !given.contains(option.name) {
            let shadowed = exclusiveInEnvironment.contains { $0.contains(option.name) && !$0.isDisjoint(with: given) }
            guard !shadowed, let value = environment[option.environmentName] else { continue }
            if option.isFlag {
                switch value.lowercased() {
                case "", "0", "false", "no": continue
                case "1", "true", "yes": _ = option.assign(value, &settings)
                default:
                    throw ConfigUsageError("\(option.environmentName) must be 1, true or yes (or 0, false, no), not \(value)")
                }
            } else if let message = option.assign(value, &settings) {
                throw ConfigUsageError("\(option.environmentName): \(message)")
            }
        }

        for option in all {
            if let message = option.violation(settings) { throw ConfigUsageError(message) }
        }
        return settings
    }
}
