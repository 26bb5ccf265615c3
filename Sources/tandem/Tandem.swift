import ArgumentParser
import Foundation

@main
struct Tandem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Real-time presence, cursor broadcast and document sync relay.",
        subcommands: [Serve.self, Token.self],
        defaultSubcommand: Serve.self)

    /// `serve` (also the default: `tandem --port 0`) goes to `ServeCommand`, which reads its options and
    /// the TANDEM_<NAME> environment from TandemServer's declarations; `token` and the top-level help go
    /// through swift-argument-parser.
    static func main() async {
        // A peer closing its socket must never kill the process.
        signal(SIGPIPE, SIG_IGN)
        // A parent that spawned us from a Swift or Dispatch thread may have passed on a mask that blocks
        // SIGTERM/SIGINT; unblock everything so graceful shutdown works however we were started.
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_UNBLOCK, &all, nil)
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "serve":
            await ServeCommand.main(arguments: Array(arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
        case let first? where !first.hasPrefix("--") || ["--help", "-h", "--version", "--generate-completion-script"].contains(first):
            // `token …`, `help …`, a mistyped subcommand, or the top-level help.
            do {
                var command = try parseAsRoot(arguments)
                if var asyncCommand = command as? AsyncParsableCommand {
                    try await asyncCommand.run()
                } else {
                    try command.run()
                }
            } catch {
                exit(withError: error)
            }
        default:
            await ServeCommand.main(arguments: arguments, environment: ProcessInfo.processInfo.environment)
        }
    }
}
