import Logging
import NIOConcurrencyHelpers
import TandemCore

/// The record schemas in force on this node: read from `--schema-dir` at start, replaced as a whole on
/// reload (SIGHUP). Any thread reads it (joins check versions, shards look up a doc's schema when it
/// loads); a reload swaps it under the lock and the shards then re-point their loaded docs.
final class SchemaStore: Sendable {
    let directory: String?
    private let registry: NIOLockedValueBox<SchemaRegistry>
    private let metrics: TandemMetrics

    /// Loads the directory (if any). Throws when a file is invalid: a node must not start without the
    /// schemas its operator configured.
    init(directory: String?, metrics: TandemMetrics) throws(SchemaDirectory.LoadError) {
        self.directory = directory
        self.metrics = metrics
        let initial = try directory.map { dir throws(SchemaDirectory.LoadError) in try SchemaDirectory.load(dir) } ?? .empty
        registry = NIOLockedValueBox(initial)
        metrics.schemasLoaded.set(to: Double(initial.schemas.count))
    }

    var current: SchemaRegistry { registry.withLockedValue { $0 } }

    func schema(for doc: String) -> DocSchema? { current.schema(for: doc) }

    /// Reads the directory again. On success the new set is in force and returned; on failure the old set
    /// stays and the error is returned (and logged by the caller). Without `--schema-dir`, nothing to do.
    func reload() -> Result<SchemaRegistry, SchemaDirectory.LoadError>? {
        guard let directory else { return nil }
        do {
            let loaded = try SchemaDirectory.load(directory)
            registry.withLockedValue { $0 = loaded }
            metrics.schemasLoaded.set(to: Double(loaded.schemas.count))
            metrics.schemaReloads[.ok]!.increment()
            return .success(loaded)
        } catch {
            metrics.schemaReloads[.failed]!.increment()
            return .failure(error)
        }
    }
}
