// tandem-watch: joins a doc, prints its members and every record change live, and reads commands from stdin
// to set a cursor and edit records. The example of docs/client-swift.md; copy it.
//
//   swift run tandem-watch ws://127.0.0.1:7070/v1/ws board:1 ada
//
// Commands: cursor X Y | put ID {"json":"object"} | set ID FIELD JSON | append ID FIELD TEXT | rm ID | quit
import Foundation
import TandemKit

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: tandem-watch ws://HOST:PORT/v1/ws DOC [USER] [--token JWT]\n".utf8))
    exit(64)
}
let url = arguments[arguments.startIndex]
let docID = arguments[arguments.startIndex + 1]
let rest = Array(arguments.dropFirst(2))
let identity: Identity =
    if let flag = rest.firstIndex(of: "--token"), flag + 1 < rest.count {
        .token(rest[flag + 1])
    } else {
        .development(user: rest.first, name: rest.first)
    }

func show(_ value: JSONValue?) -> String { value?.serializedString ?? "(removed)" }

do {
    let tandem = try await TandemConnection.connect(TandemConfiguration(urls: [url], identity: identity))
    Task {
        for await state in await tandem.states() { print("· connection: \(state)") }
    }
    let doc = try await tandem.join(docID, presence: ["cursor": [0, 0]])
    let records = await doc.records()
    print("· joined \(docID) at clock \(await doc.clock()): \(records.count) records")
    for (id, record) in records.sorted(by: { $0.key < $1.key }) { print("  \(id) = \(show(record))") }

    // Everything that happens, as it happens.
    Task {
        for await event in await doc.events() {
            switch event {
            case .presence:
                let members = await doc.members()
                let list = members.byUser.keys.sorted().map { user in
                    let cursors = members.byUser[user]!.map { show($0.state["cursor"]) }
                    return "\(user) \(cursors.joined(separator: " "))"
                }
                print("· members: \(list.joined(separator: ", "))")
            case .records(let change):
                let current = await doc.records()
                for id in (change.ids ?? Set(current.keys)).sorted() {
                    print("  [\(change.source) @\(change.clock)] \(id) = \(show(current[id]))")
                }
            case .pushSettled(let outcome):
                print("· push: \(outcome)")
            case .serverError(let error):
                print("· server: \(error)")
            case .storeFailed(let error):
                print("· \(error)")
            case .synced(let clock):
                print("· in sync at clock \(clock)")
            }
        }
    }

    // Commands from stdin (readLine blocks, so off the cooperative pool's hot path in its own thread).
    while let line = await Task.detached(operation: { readLine() }).value {
        let words = line.split(separator: " ", maxSplits: 3).map(String.init)
        do {
            switch words.first {
            case "cursor" where words.count == 3:
                try await doc.setPresence(["cursor": [.number(Int(words[1]) ?? 0), .number(Int(words[2]) ?? 0)]])
            case "put" where words.count >= 3:
                let json = parseJSON(words[2...].joined(separator: " "))
                try await doc.submit(Ops([words[1]: .put(json)]))
            case "set" where words.count == 4:
                let value = parseJSON(words[3])
                try await doc.submit(Ops([words[1]: .patch(Diff([words[2]: .put(value)]))]))
            case "append" where words.count == 4:
                let current = await doc.record(words[1])?[words[2]]?.stringValue ?? ""
                try await doc.submit(Ops([words[1]: .patch(Diff([words[2]: .append(.string(words[3]), offset: current.utf16.count)]))]))
            case "rm" where words.count == 2:
                try await doc.submit(Ops([words[1]: .remove]))
            case "quit":
                await tandem.close()
                exit(0)
            default:
                print("commands: cursor X Y | put ID JSON | set ID FIELD JSON | append ID FIELD TEXT | rm ID | quit")
            }
        } catch {
            print("· \(error)")
        }
    }
    await tandem.close()
} catch {
    FileHandle.standardError.write(Data("tandem-watch: \(error)\n".utf8))
    exit(1)
}

/// Text typed by the user, parsed as JSON (a bare word counts as a string).
func parseJSON(_ text: String) -> JSONValue {
    (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text)
}
