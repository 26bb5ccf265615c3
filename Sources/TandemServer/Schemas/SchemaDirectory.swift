import Foundation
import TandemCore

/// Reads `--schema-dir`: every `*.json` file directly in it, in file-name order, each one `DocSchema`
/// (docs/schemas.md). All or nothing: one unreadable or invalid file fails the whole load, naming the file
/// and the JSON path, so a typo never silently drops a schema (at start the node refuses to start; on a
/// reload the schemas in force stay).
enum SchemaDirectory {
    /// A schema file is written by an operator, not a client, but a wrong path (a directory of data files)
    /// must not make the node read gigabytes: files beyond these bounds fail the load.
    static let maxFiles = 1_000
    static let maxFileBytes = 1 << 20
    /// JSON nesting allowed in a schema file (nested object schemas).
    static let maxDepth = 64

    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    static func load(_ directory: String) throws(LoadError) -> SchemaRegistry {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw LoadError(description: "--schema-dir \(directory): cannot list the directory (\(error.localizedDescription))")
        }
        guard names.count <= maxFiles else {
            throw LoadError(description: "--schema-dir \(directory): \(names.count) schema files; at most \(maxFiles)")
        }
        var schemas: [DocSchema] = []
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                (attributes[.type] as? FileAttributeType) == .typeRegular
            else { continue }  // a sub-directory or socket named *.json is not a schema
            if let size = attributes[.size] as? Int, size > maxFileBytes {
                throw LoadError(description: "\(path): \(size) bytes; a schema file holds at most \(maxFileBytes)")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw LoadError(description: "\(path): cannot be read")
            }
            let value: JSONValue
            do {
                value = try JSONParser.parse(Array(data), maxDepth: maxDepth)
            } catch {
                throw LoadError(description: "\(path): not valid JSON (\(error))")
            }
            do {
                schemas.append(try DocSchema(json: value, source: name))
            } catch {
                throw LoadError(description: "\(path): \(error)")
            }
        }
        return SchemaRegistry(schemas: schemas)
    }
}
