import ArgumentParser

@main
struct TandemBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-bench",
        abstract: "Load generator for Tandem's speed goals (presence, sync, reconnect storm, Yjs rooms) and a network fuzzer.",
        discussion: """
            Run against a release `tandem serve`. Pass --redis/--ops/--server-pid/--redis-pid to get Redis \
            command counts, server metrics and CPU/RSS; scripts/bench.sh does all of that.
            """,
        subcommands: [
            PresenceCommand.self, BareServerCommand.self, BareSyncServerCommand.self, SyncCommand.self, StormCommand.self, YjsCommand.self, FuzzCommand.self,
            RedisCostCommand.self,
        ])
}
