import BargeCore
import BargeLoader
import Foundation
import Testing

/// The fixtures directory beside this file, and the config the fixtures are checked under.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "Fixtures"
    ).path

    static var config: AgentConfig {
        get throws {
            let parsed = try ConfigLoader.load(path: directory + "/barge-test.yaml")
            #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
            return parsed.config
        }
    }

    static func files(in subdirectory: String) -> [String] {
        let path = directory + "/" + subdirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.filter(DropInRules.isManifestFileName).sorted().map { "\(path)/\($0)" }
    }

    /// An expectation written in a fixture: `# expect: LINE:COLUMN message fragment`.
    struct Expectation: Hashable, CustomStringConvertible {
        var line: Int
        var column: Int
        var fragment: String
        var description: String { "\(self.line):\(self.column) \(self.fragment)" }
    }

    static func expectations(in file: String) throws -> [Expectation] {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> Expectation? in
            guard line.hasPrefix("# expect: ") else { return nil }
            let rest = line.dropFirst("# expect: ".count)
            guard let space = rest.firstIndex(of: " ") else { return nil }
            let position = rest[..<space].split(separator: ":")
            guard position.count == 2, let line = Int(position[0]), let column = Int(position[1]) else { return nil }
            let fragment = rest[rest.index(after: space)...].replacingOccurrences(of: "FIXTURES", with: directory)
            return Expectation(line: line, column: column, fragment: fragment)
        }
    }
}
