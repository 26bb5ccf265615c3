import ArgumentParser
import Foundation

@main
struct Tandem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Real-time presence, cursor broadcast and document sync relay.",
        subcommands: [Serve.self, Token.self],
        defaultSubcommand: Serve.self)

    /// Every option can also come from the environment as TANDEM_<NAME> (`--presence-ttl-ms` is
    /// TANDEM_PRESENCE_TTL_MS); the command line wins.
    static func main() async {
        // A peer closing its socket must never kill the process.
        signal(SIGPIPE, SIG_IGN)
        // A parent that spawned us from a Swift or Dispatch thread may have passed on a mask that blocks
        // SIGTERM/SIGINT; unblock everything so graceful shutdown works however we were started.
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_UNBLOCK, &all, nil)
        var arguments = Array(CommandLine.arguments.dropFirst())
        do {
            try EnvironmentOptions.apply(to: &arguments, environment: ProcessInfo.processInfo.environment)
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
